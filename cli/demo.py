"""`guardlink demo`: an embedded broker, an edge node, simulated devices and a police watcher in one process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from device_drivers.simulators import GuardHabits, SiteSimulator
from edge.embedded_broker import embedded_broker
from edge.node import EdgeNode
from gateway.police import PoliceWatcher, describe
from cli import load_checked_site, seconds
from cli.simulate import plural
from guardlink.models import Escalation
from guardlink.siteconfig import SiteConfig

log = logging.getLogger(__name__)

PRESS_EVERY_S = 8.0  # with four guards each job taking ~10 s, a site that is busy but not overrun
LOG_FILE = Path(tempfile.gettempdir()) / "guardlink-demo.log"  # the terminal shows the alarms; the logs go here
DEFAULT_SITE = Path(__file__).resolve().parents[1] / "firmware_configs" / "sites" / "school.yaml"


def register(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="run the whole path on an embedded broker with simulated devices")
    demo.add_argument("--site", type=Path, default=None, help="site file (default: the example school)")
    demo.add_argument("--duration", type=seconds, default=None, help="seconds to run (default: until Ctrl-C)")
    demo.add_argument("--json", action="store_true", help="one escalation document per line on stdout, logs on stderr")
    demo.add_argument("--press-every", type=seconds, default=PRESS_EVERY_S, help=f"mean seconds between simulated panic presses (default {PRESS_EVERY_S:g})")
    demo.add_argument("--seed", type=int, default=None, help="random seed for repeatable simulations")
    demo.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = load_checked_site(args.site or DEFAULT_SITE)
    if args.json:
        return asyncio.run(run_demo(config, duration_s=args.duration, as_json=True, press_every_s=args.press_every, seed=args.seed))
    with logs_to(LOG_FILE):
        return asyncio.run(
            run_demo(config, duration_s=args.duration, as_json=False, press_every_s=args.press_every, seed=args.seed, log_file=LOG_FILE)
        )


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
) -> int:
    """Run the whole path on an embedded broker; returns the process exit code."""
    latencies: list[float] = []
    received: list[Escalation] = []
    stop = threading.Event()
    presses = 0
    with tempfile.TemporaryDirectory(prefix="guardlink-demo-") as state_dir:
        async with embedded_broker() as broker:
            simulator = SiteSimulator(config, broker, seed=seed, habits=GuardHabits())

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

            node = EdgeNode(config, site_broker=broker, police_broker=broker, outbox_path=Path(state_dir) / "outbox.db")
            watcher = PoliceWatcher(broker, show, district=config.site.district, site=config.site.id)
            tasks = [asyncio.create_task(node.run(), name="edge"), asyncio.create_task(watcher.run(), name="police")]
            try:
                await asyncio.wait_for(asyncio.gather(node.ready.wait(), watcher.ready.wait()), timeout=15)
                if not as_json:
                    print(
                        f"guardlink demo: site {config.site.name!r} on embedded broker {broker}; "
                        f"{len(simulator.pressable)} alarm devices, {len(config.guards)} guards; a press every {press_every_s:g} s or so; "
                        f"logs {'in ' + str(log_file) if log_file else 'on stderr'}. Ctrl-C stops.",
                        file=out, flush=True,
                    )
                try:
                    presses = await asyncio.to_thread(simulate)
                finally:
                    stop.set()  # on Ctrl-C too: the simulator thread must end
                await _settle(lambda: sum(e.revision == 1 for e in received) >= presses, timeout_s=3.0)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    summary = _summary(presses, received, latencies, node)
    print(summary, file=sys.stderr if as_json else out, flush=True)
    if presses and not received:
        print("guardlink demo: no escalation reached the police stream; see the log above", file=sys.stderr)
        return 1
    return 0


async def _settle(done: Callable[[], bool], timeout_s: float) -> None:
    """Give in-flight escalations a moment to arrive after the last press."""
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


def _summary(presses: int, received: list[Escalation], latencies: list[float], node: EdgeNode) -> str:
    incidents = sum(e.revision == 1 for e in received)
    resolved = sum(e.status.final for e in received)
    text = (
        f"summary: {plural(presses, 'press')}, {plural(incidents, 'incident')} and {plural(len(received), 'revision')} at the police "
        f"({resolved} resolved or closed), {plural(node.intake.rejections.total, 'payload')} rejected"
    )
    if latencies:
        text += f", press->police latency p50 {statistics.median(latencies):.1f} ms, max {max(latencies):.1f} ms"
    return text
