"""`guardlink demo`: an embedded broker, an edge node, simulated devices and a police watcher in one process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from cli import load_checked_site, seconds
from cli.simulate import plural
from device_drivers.simulators import GuardHabits, SiteSimulator
from edge.embedded_broker import embedded_broker
from edge.node import EdgeNode
from gateway.connection import threaded_client
from gateway.police import PoliceWatcher, describe
from guardlink.districtconfig import DistrictConfig, load_district
from guardlink.models import Escalation
from guardlink.siteconfig import SiteConfig, parse_listen
from hub.accounts import Accounts, Role
from hub.database import make_engine, migrate
from hub.service import serve

log = logging.getLogger(__name__)

PRESS_EVERY_S = 8.0  # with four guards each job taking ~10 s, a site that is busy but not overrun
LOG_FILE = Path(tempfile.gettempdir()) / "guardlink-demo.log"  # the terminal shows the alarms; the logs go here
DEFAULT_SITE = Path(__file__).resolve().parents[1] / "firmware_configs" / "sites" / "school.yaml"
DEFAULT_DISTRICT = Path(__file__).resolve().parents[1] / "firmware_configs" / "districts" / "hohhot-xincheng.yaml"
HUB_LISTEN = "127.0.0.1:8480"  # the command centre's console and API; another free port when this one is taken
DEMO_LOGIN = ("demo", "demo-dispatcher")  # a dispatcher account in the demo's throwaway database


def register(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="run the whole path on an embedded broker with simulated devices")
    demo.add_argument("--site", type=Path, default=None, help="site file (default: the example school)")
    demo.add_argument("--duration", type=seconds, default=None, help="seconds to run (default: until Ctrl-C)")
    demo.add_argument("--json", action="store_true", help="one escalation document per line on stdout, logs on stderr")
    demo.add_argument("--press-every", type=seconds, default=PRESS_EVERY_S, help=f"mean seconds between simulated panic presses (default {PRESS_EVERY_S:g})")
    demo.add_argument("--seed", type=int, default=None, help="random seed for repeatable simulations")
    demo.add_argument("--hub-listen", default=HUB_LISTEN, help=f"where the demo's command centre serves its console and API (default {HUB_LISTEN})")
    demo.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = load_checked_site(args.site or DEFAULT_SITE)
    district = demo_district(config)
    options = {"duration_s": args.duration, "press_every_s": args.press_every, "seed": args.seed, "district": district, "hub_listen": args.hub_listen}
    if args.json:
        return asyncio.run(run_demo(config, as_json=True, **options))
    with logs_to(LOG_FILE):
        return asyncio.run(run_demo(config, as_json=False, log_file=LOG_FILE, **options))


def demo_district(site: SiteConfig) -> DistrictConfig:
    """The example district, with the demo's site in its first community if the site file is another one."""
    district = load_district(DEFAULT_DISTRICT)
    if any(site.site.id in c.sites for c in district.communities) or not district.communities:
        return district
    first, *rest = district.communities
    return district.model_copy(update={"communities": [first.model_copy(update={"sites": [*first.sites, site.site.id]}), *rest]})


@contextmanager
def logs_to(path: Path) -> Iterator[None]:
    """Send log records to `path` instead of the terminal, so warnings do not break up the alarm lines."""
    root = logging.getLogger()
    before = root.handlers[:]
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.handlers = [handler]
    try:
        yield
    finally:
        root.handlers = before
        handler.close()


async def run_demo(
    config: SiteConfig,
    *,
    duration_s: float | None,
    as_json: bool,
    press_every_s: float = PRESS_EVERY_S,
    seed: int | None = None,
    out: TextIO = sys.stdout,
    log_file: Path | None = None,
    district: DistrictConfig | None = None,
    hub_listen: str = HUB_LISTEN,
) -> int:
    """Run the whole path on an embedded broker, with the district's command centre when `district` is given;
    returns the process exit code."""
    latencies: list[float] = []
    received: list[Escalation] = []
    stop = threading.Event()
    presses = 0
    with tempfile.TemporaryDirectory(prefix="guardlink-demo-") as state_dir:
        async with embedded_broker() as broker:
            simulator = SiteSimulator(config, broker, seed=seed, habits=GuardHabits(), mqtt_client=threaded_client)

            def show(escalation: Escalation) -> None:
                received.append(escalation)
                pressed_at = simulator.pressed.pop(escalation.incident.device, None) if escalation.revision == 1 else None
                latency_ms = (time.time() - pressed_at) * 1000 if pressed_at else None
                if latency_ms is not None:
                    latencies.append(latency_ms)
                print(escalation.to_json().decode() if as_json else describe(escalation, latency_ms), file=out, flush=True)

            def simulate() -> int:
                with simulator:  # paho blocks: connect and run off the loop, which also serves the embedded broker
                    return simulator.run(duration_s, press_every_s=press_every_s, stop=stop)

            if district is None:
                config = config.model_copy(update={"police": config.police.model_copy(update={"receipts": False})})
            node = EdgeNode(config, site_broker=broker, police_broker=broker, outbox_path=Path(state_dir) / "outbox.db")
            watcher = PoliceWatcher(broker, show, district=config.site.district, site=config.site.id)
            tasks = [asyncio.create_task(node.run(), name="edge"), asyncio.create_task(watcher.run(), name="police")]
            hub_url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            if district is not None:
                database = f"sqlite:///{Path(state_dir) / 'hub.db'}"
                await asyncio.to_thread(_demo_account, database)
                listen = hub_listen if _free(hub_listen) else "127.0.0.1:0"
                tasks.append(asyncio.create_task(
                    serve(district, database=database, listen=listen, broker=broker, on_listening=hub_url.set_result), name="hub",
                ))
            try:
                ready = [node.ready.wait(), watcher.ready.wait(), *([hub_url] if district is not None else [])]
                await asyncio.wait_for(asyncio.gather(*ready), timeout=30)
                if not as_json:
                    print(
                        f"guardlink demo: site {config.site.name!r} on embedded broker {broker}; "
                        f"{len(simulator.pressable)} alarm devices, {len(config.guards)} guards; a press every {press_every_s:g} s or so; "
                        f"logs {'in ' + str(log_file) if log_file else 'on stderr'}. Ctrl-C stops.",
                        file=out, flush=True,
                    )
                if district is not None:
                    login = f"{hub_url.result()}/console/ (log in as {DEMO_LOGIN[0]} / {DEMO_LOGIN[1]}; API at /docs)"
                    print(f"guardlink demo: command centre {login}", file=sys.stderr if as_json else out, flush=True)
                try:
                    presses = await asyncio.to_thread(simulate)
                finally:
                    stop.set()  # on Ctrl-C too: the simulator thread must end
                await _settle(lambda: sum(e.revision == 1 for e in received) >= presses, timeout_s=3.0)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    summary = _summary(presses, received, latencies, node, hub_receipted=district is not None)
    print(summary, file=sys.stderr if as_json else out, flush=True)
    if presses and not received:
        print("guardlink demo: no escalation reached the police stream; see the log above", file=sys.stderr)
        return 1
    return 0


async def _settle(done: Callable[[], bool], timeout_s: float) -> None:
    """Give in-flight escalations a moment to arrive after the last press."""
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:  # noqa: ASYNC110 - `done` counts what the watcher has shown; no event to wait on
        await asyncio.sleep(0.05)


def _demo_account(database: str) -> None:
    """The demo's dispatcher login, in the demo's throwaway hub database."""
    engine = make_engine(database)
    try:
        migrate(engine)
        Accounts(engine).add_user(DEMO_LOGIN[0], Role.DISPATCHER, password=DEMO_LOGIN[1], actor="demo")
    finally:
        engine.dispose()


def _free(listen: str) -> bool:
    """Whether host:port can be listened on now."""
    host, port = parse_listen(listen)
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _summary(presses: int, received: list[Escalation], latencies: list[float], node: EdgeNode, *, hub_receipted: bool = False) -> str:
    incidents = sum(e.revision == 1 for e in received)
    resolved = sum(e.status.final for e in received)
    text = (
        f"summary: {plural(presses, 'press')}, {plural(incidents, 'incident')} and {plural(len(received), 'revision')} at the police "
        f"({resolved} resolved or closed), {plural(node.intake.rejections.total, 'payload')} rejected"
    )
    if latencies:
        text += f", press->police latency p50 {statistics.median(latencies):.1f} ms, max {max(latencies):.1f} ms"
    if hub_receipted:
        unreceipted = node.outbox.unreceipted
        text += "; the command centre confirmed " + (f"all but {plural(unreceipted, 'revision')}" if unreceipted else "every revision")
    return text
