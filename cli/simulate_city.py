"""`guardlink simulate city`: a city's sites as load on the district broker (bench/city.py), bounded in time and count."""

from __future__ import annotations

import argparse
import sys

from cli import seconds
from cli.simulate import positive_int


def register(simulate: argparse.ArgumentParser) -> None:
    forms = simulate.add_subparsers(dest="simulate_form", required=False, metavar="city")
    city = forms.add_parser(
        "city", help="many sites' heartbeats, guard reports and escalations against a district broker",
        description="Simulate a city: every site sends its status heartbeat, its guard report and escalations (a few revisions "
        "each) to the district broker over a few shared MQTT connections, resending a revision until the hub's receipt is "
        "back. Ends after --seconds or --max-messages, then prints what was sent and the publish -> receipt times.",
    )
    city.add_argument("--sites", type=positive_int, required=True, help="simulated sites (site-00000 ...)")
    city.add_argument("--guards-per-site", type=positive_int, default=4, help="guards in each site's report (default 4)")
    city.add_argument("--devices-per-site", type=positive_int, default=10, help="devices each site's status counts (default 10)")
    city.add_argument("--broker", default="mqtt://127.0.0.1:1883",
                      help="district broker(s): mqtt://host:port[,host:port...], e.g. the MQTT listeners of a NATS cluster's nodes")
    city.add_argument("--district", default="city", help="district id in the topics (default city)")
    city.add_argument("--connections", type=positive_int, default=16, help="MQTT connections the sites share (default 16)")
    city.add_argument("--seconds", type=seconds, default=60.0, help="how long to send (default 60)")
    city.add_argument("--max-messages", type=positive_int, default=None, help="stop after this many messages")
    city.add_argument("--heartbeat-s", type=seconds, default=30.0, help="each site's status heartbeat period (default 30)")
    city.add_argument("--guards-every-s", type=seconds, default=30.0, help="each site's guard report period (default 30)")
    city.add_argument("--incidents-per-hour", type=float, default=1.0, help="escalations per site per hour (default 1)")
    city.set_defaults(run=run)


def brokers(text: str) -> list:
    """`mqtt://host:port[,host:port...]` -> one BrokerUrl per host."""
    from guardlink.siteconfig import BrokerUrl

    scheme, _, hosts = text.partition("://") if "://" in text else ("mqtt", "", text)
    return [BrokerUrl.parse(f"{scheme}://{host.strip()}") for host in hosts.split(",") if host.strip()]


def run(args: argparse.Namespace) -> int:
    from bench.city import CityPlan, Fleet, run_city, site_name
    from bench.hub import percentile

    try:
        targets = brokers(args.broker)
    except ValueError as exc:
        print(f"guardlink simulate city: {exc}", file=sys.stderr)
        return 2
    plan = CityPlan(sites=args.sites, guards_per_site=args.guards_per_site, devices_per_site=args.devices_per_site, heartbeat_s=args.heartbeat_s,
                    guards_every_s=args.guards_every_s, incidents_per_hour=args.incidents_per_hour, district=args.district)
    fleet = Fleet(targets, [site_name(n) for n in range(args.sites)], district=args.district, connections=args.connections)
    try:
        counts = run_city(fleet, plan, args.seconds, max_messages=args.max_messages)
        fleet.wait_receipted(timeout_s=10)
    finally:
        fleet.close()
    lags = [(counts.receipted_at[key] - at) * 1000 for key, at in counts.published_at.items() if key in counts.receipted_at]
    print(f"{args.sites} sites: {counts.messages} messages ({counts.messages / counts.seconds:.0f}/s over {counts.seconds:.0f} s), "
          f"{len(counts.published_at)} escalation revisions, {len(lags)} receipted, {counts.resent} resent")
    if lags:
        print(f"publish -> receipt: p50 {percentile(lags, 50):.1f} ms, p99 {percentile(lags, 99):.1f} ms")
    elif counts.published_at:
        print("no receipts came back: is a hub (`guardlink hub`) taking this district?")
    return 0
