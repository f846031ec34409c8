"""`guardlink simulate`: a site's devices, simulated against a real broker."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from guardlink.commands import broker_url, load_checked_site
from guardlink.siteconfig import BrokerUrl


def register(commands: argparse._SubParsersAction) -> None:
    simulate = commands.add_parser("simulate", help="simulate a site's devices against a broker")
    simulate.add_argument("--site", type=Path, required=True, help="site file")
    simulate.add_argument("--broker", type=broker_url, default=None, help="site broker mqtt://host:port (default: from the site file)")
    simulate.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)")
    simulate.add_argument("--press-every", type=float, default=3.0, help="mean seconds between panic presses")
    simulate.add_argument("--press", metavar="DEVICE", default=None, help="press this device's alarm once and exit")
    simulate.add_argument("--action", default="single", help="button action for --press (default: single)")
    simulate.add_argument("--seed", type=int, default=None, help="random seed")
    simulate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from device_drivers.simulators import SiteSimulator

    config = load_checked_site(args.site)
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
