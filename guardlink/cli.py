"""The `guardlink` command line."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import sys
import time
from pathlib import Path

from guardlink.siteconfig import BrokerUrl, ConfigError, SiteConfig, load_site

log = logging.getLogger("guardlink")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `guardlink` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose >= 2 else logging.INFO if args.verbose or args.command == "edge" else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        return args.run(args)
    except ConfigError as exc:
        for message in exc.messages:
            print(message, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="guardlink", description="Edge gateway linking site guards and police over MQTT.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output on stderr (-vv for debug)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="run the whole path on an embedded broker with simulated devices")
    demo.add_argument("--site", type=Path, default=None, help="site file (default: the example school)")
    demo.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)")
    demo.add_argument("--json", action="store_true", help="one escalation document per line on stdout, logs on stderr")
    demo.add_argument("--press-every", type=float, default=3.0, help="mean seconds between simulated panic presses")
    demo.add_argument("--seed", type=int, default=None, help="random seed for repeatable simulations")
    demo.set_defaults(run=_demo)

    edge = commands.add_parser("edge", help="run an edge node for a site against real brokers")
    edge.add_argument("--config", type=Path, required=True, help="site file, e.g. firmware_configs/sites/school.yaml")
    edge.add_argument("--broker", type=_broker_url, default=None, help="site broker mqtt://host:port (default: from the site file)")
    edge.add_argument("--police-broker", type=_broker_url, default=None, help="police broker mqtt://host:port (default: from the site file)")
    edge.add_argument("--outbox", type=Path, default=None, help="outbox database (default: the site file's, else $XDG_STATE_HOME/guardlink/<site>/outbox.db)")
    edge.set_defaults(run=_edge)

    police = commands.add_parser("police", help="the police side of the link")
    police_commands = police.add_subparsers(dest="police_command", required=True, metavar="COMMAND")
    watch = police_commands.add_parser("watch", help="print the escalation stream as the police see it")
    watch.add_argument("--broker", type=_broker_url, required=True, help="police broker mqtt://host:port")
    watch.add_argument("--district", default="+", help="only this district (default: all)")
    watch.add_argument("--site", default="+", help="only this site (default: all)")
    watch.add_argument("--json", action="store_true", help="one escalation document per line")
    watch.set_defaults(run=_police_watch)

    bench = commands.add_parser(
        "bench", help="benchmarks, each next to a baseline measured in the same run",
        description="Run a benchmark; options after the name go to it (e.g. `guardlink bench latency --json`).",
    )
    bench.add_argument("name", choices=BENCHMARKS, help="; ".join(f"{k}: {v}" for k, v in BENCHMARKS.items()))
    bench.add_argument("options", nargs=argparse.REMAINDER, help="--json, and the benchmark's own options (see --help after the name)")
    bench.set_defaults(run=_bench)

    schema = commands.add_parser("schema", help="print the JSON Schema of a guardlink document")
    schema.add_argument("document", choices=["escalation"], help="which document")
    schema.set_defaults(run=_schema)

    simulate = commands.add_parser("simulate", help="simulate a site's devices against a broker")
    simulate.add_argument("--site", type=Path, required=True, help="site file")
    simulate.add_argument("--broker", type=_broker_url, default=None, help="site broker mqtt://host:port (default: from the site file)")
    simulate.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)")
    simulate.add_argument("--press-every", type=float, default=3.0, help="mean seconds between panic presses")
    simulate.add_argument("--press", metavar="DEVICE", default=None, help="press this device's alarm once and exit")
    simulate.add_argument("--action", default="single", help="button action for --press (default: single)")
    simulate.add_argument("--seed", type=int, default=None, help="random seed")
    simulate.set_defaults(run=_simulate)
    return parser


BENCHMARKS = {
    "latency": "panic press -> police through the durable edge, vs a bare paho relay",
    "dispatch": "nearest available guard among 100k, vs scipy cKDTree and numpy brute force",
}


def _bench(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"bench.{args.name}")
    return module.main(args.options)


def _broker_url(text: str) -> BrokerUrl:
    try:
        return BrokerUrl.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _site(path: Path) -> SiteConfig:
    from device_drivers.registry import DRIVERS

    return load_site(path, known_drivers=DRIVERS.keys())


def _demo(args: argparse.Namespace) -> int:
    from guardlink.demo import DEFAULT_SITE, run_demo

    config = _site(args.site or DEFAULT_SITE)
    return asyncio.run(run_demo(config, duration_s=args.duration, as_json=args.json, press_every_s=args.press_every, seed=args.seed))


def _edge(args: argparse.Namespace) -> int:
    # The outbox writer thread hands each commit back to the event loop: short GIL turns keep escalation latency low.
    sys.setswitchinterval(0.0005)
    from edge.node import EdgeNode

    config = _site(args.config)
    node = EdgeNode(
        config,
        site_broker=args.broker or BrokerUrl.parse(config.broker),
        police_broker=args.police_broker or BrokerUrl.parse(config.police.broker),
        outbox_path=args.outbox or _default_outbox(config),
    )
    asyncio.run(node.run())
    return 0


def _default_outbox(config: SiteConfig) -> Path:
    if config.outbox:
        return Path(config.outbox).expanduser()
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "guardlink" / config.site.id / "outbox.db"


def _police_watch(args: argparse.Namespace) -> int:
    from gateway.police import PoliceWatcher, SiteNotice, describe
    from guardlink.models import Escalation

    def show(escalation: Escalation) -> None:
        if args.json:
            print(escalation.to_json().decode(), flush=True)
        else:
            since_detection_ms = (time.time() - escalation.incident.detected_at.timestamp()) * 1000
            print(describe(escalation, since_detection_ms), flush=True)

    def site_notice(notice: SiteNotice) -> None:
        stamp = time.strftime("%H:%M:%S")
        print(f"{stamp} SITE {'BACK' if notice.online else 'OFFLINE'} {notice.site}: {notice.detail}", file=sys.stderr if args.json else sys.stdout, flush=True)

    watcher = PoliceWatcher(args.broker, show, on_site=site_notice, district=args.district, site=args.site)
    print(f"watching {watcher.filter} on {args.broker}", file=sys.stderr, flush=True)
    asyncio.run(watcher.run())
    return 0


def _schema(args: argparse.Namespace) -> int:
    from guardlink.models import escalation_json_schema

    print(json.dumps(escalation_json_schema(), indent=2, sort_keys=True))
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from device_drivers.simulators import SiteSimulator

    config = _site(args.site)
    broker = args.broker or BrokerUrl.parse(config.broker)
    with SiteSimulator(config, broker, seed=args.seed) as simulator:
        if args.press:
            simulator.report_positions()
            simulator.press(args.press, args.action)
            print(f"pressed {args.press} ({args.action})", file=sys.stderr)
        else:
            presses = simulator.run(args.duration, press_every_s=args.press_every)
            print(f"{presses} presses", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
