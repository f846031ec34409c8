"""`guardlink simulate`: a site's devices, simulated against a real broker."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from cli import broker_url, load_checked_site
from guardlink.siteconfig import BrokerUrl


def register(commands: argparse._SubParsersAction) -> None:
    simulate = commands.add_parser(
        "simulate", help="simulate a site's devices against a broker",
        description="Simulate a site's devices. Without --devices/--rate: guards walk and wearables report every second, "
        "with a panic press every --press-every seconds. With --devices N and/or --rate R: a load run, every device "
        "(the site's own, then generated ones of every family) sending its everyday traffic, R messages a second in all.",
    )
    simulate.add_argument("--site", type=Path, required=True, help="site file")
    simulate.add_argument("--broker", type=broker_url, default=None, help="site broker mqtt://host:port (default: from the site file)")
    simulate.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)")
    simulate.add_argument("--press-every", type=float, default=3.0, help="mean seconds between panic presses")
    simulate.add_argument("--press", metavar="DEVICE", default=None, help="press this device's alarm once and exit")
    simulate.add_argument("--action", default="single", help="button action for --press (default: single)")
    simulate.add_argument("--seed", type=int, default=None, help="random seed")
    simulate.add_argument("--devices", type=_positive_int, default=None, metavar="N",
                          help="simulate N devices: the site's own, then generated ones (sim-0, sim-1 ...) of every family in turn")
    simulate.add_argument("--rate", type=_positive_float, default=None, metavar="R", help="load run: R messages a second in all (default 100)")
    simulate.add_argument("--site-out", type=Path, default=None, metavar="FILE",
                          help="write the site with the generated devices to FILE (for `guardlink edge --config FILE`)")
    simulate.add_argument("--public-key", type=Path, default=None, metavar="FILE",
                          help="site-signing.pub: native devices then verify, apply and report pushed configurations")
    simulate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from device_drivers.simulators import SiteSimulator, with_simulated_devices

    config = load_checked_site(args.site)
    if args.devices:
        config = with_simulated_devices(config, args.devices)
    if args.site_out:
        # Self-contained: what the devices' templates gave is in the devices now, so the file works anywhere.
        document = config.model_dump(mode="json", exclude_defaults=True, exclude={"devices": {"__all__": {"template"}}})
        args.site_out.write_text(yaml.safe_dump(document, sort_keys=False))
        print(f"wrote {args.site_out} with {len(config.devices)} devices", file=sys.stderr)
    broker = args.broker or BrokerUrl.parse(config.broker)
    public_key = None
    if args.public_key:
        from guardlink.provisioning import load_public_key

        public_key = load_public_key(args.public_key.read_text())
    with SiteSimulator(config, broker, seed=args.seed, public_key=public_key) as simulator:
        if args.press:
            simulator.report_positions()
            simulator.press(args.press, args.action)
            print(f"pressed {args.press} ({args.action})", file=sys.stderr)
        elif args.devices or args.rate:
            sent, presses = simulator.run_load(args.duration, args.rate or 100.0, press_every_s=args.press_every)
            print(f"{sent} messages from {len(config.devices)} devices, {presses} presses", file=sys.stderr)
        else:
            presses = simulator.run(args.duration, press_every_s=args.press_every)
            print(f"{presses} presses", file=sys.stderr)
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return value
