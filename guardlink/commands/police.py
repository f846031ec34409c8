"""`guardlink police watch`: the escalation stream and site liveness, as the police see them."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from guardlink.commands import broker_url


def register(commands: argparse._SubParsersAction) -> None:
    police = commands.add_parser("police", help="the police side of the link")
    police_commands = police.add_subparsers(dest="police_command", required=True, metavar="COMMAND")
    watch = police_commands.add_parser("watch", help="print the escalation stream as the police see it")
    watch.add_argument("--broker", type=broker_url, required=True, help="police broker mqtt://host:port")
    watch.add_argument("--district", default="+", help="only this district (default: all)")
    watch.add_argument("--site", default="+", help="only this site (default: all)")
    watch.add_argument("--json", action="store_true", help="one escalation document per line")
    watch.set_defaults(run=watch_stream)


def watch_stream(args: argparse.Namespace) -> int:
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
