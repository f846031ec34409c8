"""`guardlink police watch` and `police command`: the escalation stream and site liveness as the police see them, and commands back."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from cli import broker_url


def register(commands: argparse._SubParsersAction) -> None:
    police = commands.add_parser("police", help="the police side of the link")
    police_commands = police.add_subparsers(dest="police_command", required=True, metavar="COMMAND")
    watch = police_commands.add_parser("watch", help="print the escalation stream as the police see it")
    watch.add_argument("--broker", type=broker_url, required=True, help="police broker mqtt://host:port")
    watch.add_argument("--district", default="+", help="only this district (default: all)")
    watch.add_argument("--site", default="+", help="only this site (default: all)")
    watch.add_argument("--json", action="store_true", help="one escalation document per line")
    watch.set_defaults(run=watch_stream)

    command = police_commands.add_parser("command", help="send a command to a site about one of its escalations")
    command.add_argument("--broker", type=broker_url, required=True, help="police broker mqtt://host:port")
    command.add_argument("--district", required=True, help="the site's district")
    command.add_argument("--site", required=True, help="the site id")
    command.add_argument("escalation", help="escalation id")
    command.add_argument("action", choices=["acknowledge", "more-guards", "close"], help="what to do")
    command.add_argument("--count", type=int, default=1, help="more-guards: how many more (default 1)")
    command.add_argument("--by", default=os.environ.get("USER") or "police", help="officer or desk (default: $USER)")
    command.set_defaults(run=send_command)


def send_command(args: argparse.Namespace) -> int:
    import paho.mqtt.client as mqtt
    from pydantic import ValidationError

    from guardlink import topics
    from guardlink.models import CommandKind, PoliceCommand

    try:
        doc = PoliceCommand(command=CommandKind(args.action.replace("-", "_")), escalation=args.escalation, by=args.by, count=args.count)
    except ValidationError as exc:
        print(f"invalid command: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 2
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    if args.broker.username:
        client.username_pw_set(args.broker.username, args.broker.password)
    client.connect(args.broker.host, args.broker.port)
    client.loop_start()
    try:
        info = client.publish(topics.police_commands(args.district, args.site), doc.to_json(), qos=1)
        info.wait_for_publish(10)
        if not info.is_published():
            print(f"the police broker {args.broker} did not acknowledge the command", file=sys.stderr)
            return 1
    finally:
        client.disconnect()
        client.loop_stop()
    print(f"sent {doc.command.value} for {doc.escalation} to {args.district}/{args.site}", file=sys.stderr)
    return 0


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
