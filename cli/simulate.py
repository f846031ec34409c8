"""`guardlink simulate`: a site's devices, simulated against a real broker."""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path

import yaml

from cli import broker_url, load_checked_site, seconds
from guardlink.siteconfig import BrokerUrl, Device


def register(commands: argparse._SubParsersAction) -> None:
    simulate = commands.add_parser(
        "simulate", help="simulate a site's devices against a broker",
        description="Simulate a site's devices. Without --devices/--rate: guards walk and wearables report every second, "
        "with a panic press every --press-every seconds. With --devices N and/or --rate R: a load run, every device "
        "(the site's own, then generated ones of every family) sending its everyday traffic, R messages a second in all.",
    )
    simulate.add_argument("--site", type=Path, default=None, help="site file (needed unless `simulate city`)")
    simulate.add_argument("--broker", type=broker_url, default=None, help="site broker mqtt://host:port (default: from the site file)")
    simulate.add_argument("--duration", type=duration, default=None, help="seconds to run (default: until Ctrl-C)")
    simulate.add_argument("--press-every", type=seconds, default=3.0, help="mean seconds between panic presses")
    simulate.add_argument("--press", metavar="DEVICE", default=None, help="press this device's alarm once and exit")
    simulate.add_argument("--action", default="single", help="button action for --press (default: single)")
    simulate.add_argument("--seed", type=int, default=None, help="random seed")
    simulate.add_argument("--devices", type=positive_int, default=None, metavar="N",
                          help="simulate N devices: the site's own, then generated ones (sim-0, sim-1 ...) of every family in turn")
    simulate.add_argument("--rate", type=_positive_rate, default=None, metavar="R", help="load run: R messages a second in all (default 100)")
    simulate.add_argument("--site-out", type=Path, default=None, metavar="FILE",
                          help="write the site with the generated devices to FILE (for `guardlink edge --config FILE`)")
    simulate.add_argument("--public-key", type=Path, default=None, metavar="FILE",
                          help="site-signing.pub: native devices then verify, apply and report pushed configurations")
    simulate.set_defaults(run=run)
    from cli import simulate_city

    simulate_city.register(simulate)


def run(args: argparse.Namespace) -> int:
    if args.site is None:
        print("guardlink simulate: --site SITE.yaml is needed (or `guardlink simulate city --sites N ...`)", file=sys.stderr)
        return 2
    from device_drivers.simulators import GuardHabits, SiteSimulator, with_simulated_devices
    from gateway.connection import threaded_client

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
    load = bool(args.devices or args.rate)
    # Plain runs simulate the guards too, so offers are answered as on a real site instead of timing out.
    simulator = SiteSimulator(
        config, broker, seed=args.seed, public_key=public_key, habits=None if load or args.press else GuardHabits(), mqtt_client=threaded_client,
    )
    if args.press:
        try:
            device = simulator.pressable_device(args.press, args.action)
        except ValueError as exc:
            print(f"guardlink simulate: {exc}", file=sys.stderr)
            return 2
    with ExitStack() as connected:
        try:
            connected.enter_context(simulator)
        except (OSError, ConnectionError) as exc:
            print(f"guardlink simulate: cannot reach the site broker {broker}: {exc}; start it, or pass --broker", file=sys.stderr)
            return 1
        if args.press:
            simulator.report_positions()
            simulator.press(args.press, args.action)
            print(f"pressed {args.press} ({args.action}){_meaning(device, args.action)}", file=sys.stderr)
        elif load:
            sent, presses = simulator.run_load(args.duration, args.rate or 100.0, press_every_s=args.press_every)
            print(f"{plural(sent, 'message')} from {plural(len(config.devices), 'device')}, {plural(presses, 'press')}", file=sys.stderr)
        else:
            presses = simulator.run(args.duration, press_every_s=args.press_every)
            print(plural(presses, "press"), file=sys.stderr)
    return 0


def _meaning(device: Device, action: str) -> str:
    """What the edge makes of the action, when it is not an alarm (it records it without escalating)."""
    if action in device.test_actions:
        return ": a test action, the police receive a test incident"
    from device_drivers.registry import driver

    if action in device.duress_actions or action in device.panic_actions or driver(device.driver).sos_key:
        return ""
    return f": not an alarm action of {device.id} (panic: {', '.join(device.panic_actions) or 'none'}), the edge records it without escalating"


def plural(count: int, noun: str) -> str:
    """`1 press`, `2 presses`."""
    return f"{count} {noun if count == 1 else noun + ('es' if noun.endswith(('s', 'sh', 'ch', 'x')) else 's')}"


def _positive_rate(text: str) -> float:
    try:
        return seconds(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text} must be a positive number of messages a second") from None


def positive_int(text: str) -> int:
    """argparse type: an integer above 0."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return value


def duration(text: str) -> float:
    """argparse type for --duration: seconds, or 0 (only what is asked besides, such as writing --site-out)."""
    return 0.0 if text.strip() in ("0", "0.0") else seconds(text)
