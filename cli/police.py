"""`guardlink police watch` and `police command`: the escalation stream and site liveness as the police see them, and commands back."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time

from cli import broker_url

# `police command` exit codes (documented in the README).
APPLIED, REFUSED, USAGE, NOT_ANSWERED, UNREACHABLE = 0, 1, 2, 3, 4


def register(commands: argparse._SubParsersAction) -> None:
    police = commands.add_parser("police", help="the police side of the link")
    police_commands = police.add_subparsers(dest="police_command", required=True, metavar="COMMAND")
    watch = police_commands.add_parser(
        "watch", help="print the escalation stream as the police see it",
        description="Print the escalation stream, with the open escalations sites report at start. The session is persistent: "
        "what arrives while the watcher is away is shown when it is back. Two watchers on one broker need different --name.",
    )
    watch.add_argument("--broker", type=broker_url, required=True, help="police broker mqtt://host:port")
    watch.add_argument("--district", default="+", help="only this district (default: all)")
    watch.add_argument("--site", default="+", help="only this site (default: all)")
    watch.add_argument("--name", default=None, help="this watcher's name, part of its session id (default: none; give each watcher its own)")
    watch.add_argument("--json", action="store_true", help="one escalation document per line")
    watch.set_defaults(run=watch_stream)

    command = police_commands.add_parser(
        "command", help="send a command to a site about one of its escalations",
        description="Send a command and wait for the site's answer. Exit codes: 0 applied, 1 refused by the site (the reason "
        "is printed), 2 bad usage, 3 no answer within --wait (site offline, wrong --district/--site), 4 police broker unreachable.",
    )
    command.add_argument("--broker", type=broker_url, required=True, help="police broker mqtt://host:port")
    command.add_argument("--district", required=True, help="the site's district")
    command.add_argument("--site", required=True, help="the site id")
    command.add_argument("escalation", help="escalation id, or its last 8 characters as `police watch` shows them (#...)")
    command.add_argument("action", choices=["acknowledge", "more-guards", "close"], help="what to do")
    command.add_argument("--count", type=int, default=1, help="more-guards: how many more (default 1)")
    command.add_argument("--by", default=os.environ.get("USER") or "police", help="officer or desk (default: $USER)")
    command.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the site's answer (default 10)")
    command.set_defaults(run=send_command)


def send_command(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from gateway.connection import threaded_client
    from gateway.police import describe
    from guardlink import topics
    from guardlink.ids import uuid7
    from guardlink.models import CommandAnswer, CommandKind, CommandOutcome, Escalation, PoliceCommand

    try:
        doc = PoliceCommand(
            command=CommandKind(args.action.replace("-", "_")), escalation=args.escalation.removeprefix("#"), by=args.by,
            count=args.count, id=str(uuid7()),
        )
    except ValidationError as exc:
        print(f"invalid command: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}", file=sys.stderr)
        return USAGE
    answers_topic = topics.police_command_answers(args.district, args.site)
    escalations_topic = topics.police_escalations(args.district, args.site)
    answer: list[CommandAnswer] = []
    revisions: dict[tuple[str, int], Escalation] = {}
    subscribed, answered = threading.Event(), threading.Event()

    def on_message(client: object, userdata: object, message: object) -> None:
        try:
            if message.topic == answers_topic:
                received = CommandAnswer.model_validate_json(message.payload)
                if received.command_id == doc.id:
                    answer.append(received)
                    answered.set()
            else:
                escalation = Escalation.from_json(message.payload)
                revisions[(escalation.id, escalation.revision)] = escalation
        except (ValidationError, ValueError):
            pass  # someone else's traffic

    try:
        client = threaded_client(args.broker)
        client.on_message = on_message
        client.on_subscribe = lambda *_: subscribed.set()
        client.connect(args.broker.host, args.broker.port)
    except (OSError, ValueError) as exc:
        print(f"guardlink police command: cannot reach the police broker {args.broker}: {exc}; check --broker", file=sys.stderr)
        return UNREACHABLE
    client.loop_start()
    try:
        client.subscribe([(answers_topic, 1), (escalations_topic, 1)])
        if not subscribed.wait(10):
            print(f"guardlink police command: the police broker {args.broker} did not accept the connection or subscription within 10 s", file=sys.stderr)
            return UNREACHABLE
        info = client.publish(topics.police_commands(args.district, args.site), doc.to_json(), qos=1)
        info.wait_for_publish(10)
        if not info.is_published():
            print(f"guardlink police command: the police broker {args.broker} did not acknowledge the command", file=sys.stderr)
            return UNREACHABLE
        what = f"{doc.command.value} for {doc.escalation} to {args.district}/{args.site}"
        if not answered.wait(args.wait):
            print(
                f"sent {what}, but the site did not answer within {args.wait:g} s: is the edge of {args.site} running and "
                f"connected (`guardlink police watch` shows SITE OFFLINE), and are --district and --site right?", file=sys.stderr,
            )
            return NOT_ANSWERED
        result = answer[0]
        if result.outcome is CommandOutcome.REFUSED:
            print(f"refused: {what}: {result.reason}", file=sys.stderr)
            return REFUSED
        key, until = (result.escalation or "", result.revision or 0), time.monotonic() + 5
        while key not in revisions and time.monotonic() < until:  # the revision follows once the site has stored it
            time.sleep(0.02)
        shown = describe(revisions[key]) if key in revisions else f"revision {result.revision} (not yet delivered)"
        print(f"applied: {what}: {shown}", file=sys.stderr)
        return APPLIED
    finally:
        client.disconnect()
        client.loop_stop()


def watch_stream(args: argparse.Namespace) -> int:
    from gateway.police import PoliceWatcher, SiteNotice, describe, local_time
    from guardlink.models import Escalation, iso

    def show(escalation: Escalation, note: str = "") -> None:
        if args.json:
            print(escalation.to_json().decode(), flush=True)
            return
        # The time from the press matters for the first revision only; later ones are later by design.
        latency_ms = (time.time() - escalation.incident.detected_at.timestamp()) * 1000 if escalation.revision == 1 and not note else None
        print(describe(escalation, latency_ms) + note, flush=True)

    def site_notice(notice: SiteNotice) -> None:
        print(
            f"{local_time(iso(time.time()))} SITE {'BACK' if notice.online else 'OFFLINE'} {notice.site}: {notice.detail}",
            file=sys.stderr if args.json else sys.stdout, flush=True,
        )

    watcher = PoliceWatcher(
        args.broker, show, on_site=site_notice, on_open=lambda e: show(e, "  (open at the site)"),
        district=args.district, site=args.site, name=args.name,
    )
    print(f"watching {watcher.filter} on {args.broker} (session {watcher.identifier})", file=sys.stderr, flush=True)
    try:
        asyncio.run(watcher.run())
    except asyncio.CancelledError:
        pass  # stopped while connecting
    return 0
