"""`guardlink config validate | push | status`: installers' view of a site's configuration."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from cli import broker_url, load_checked_site
from cli.keys import default_key_dir
from guardlink.siteconfig import BrokerUrl, ConfigError, SiteConfig


def register(commands: argparse._SubParsersAction) -> None:
    config = commands.add_parser("config", help="validate, push and inspect site and device configuration")
    actions = config.add_subparsers(dest="config_command", required=True, metavar="COMMAND")

    validate = actions.add_parser("validate", help="check site files (and their templates): every error as file:line:col")
    validate.add_argument("files", nargs="+", type=Path, help="site files")
    validate.set_defaults(run=run_validate)

    push = actions.add_parser("push", help="publish each device's signed configuration, retained, on its config topic")
    push.add_argument("site", type=Path, help="site file")
    push.add_argument("--broker", type=broker_url, default=None, help="site broker mqtt://[user:password@]host:port (default: the site file's)")
    push.add_argument("--key", type=Path, default=None, help="site signing key (default: ~/.config/guardlink/keys/site-signing.key)")
    push.add_argument("--device", action="append", default=None, help="only this device (repeatable)")
    push.add_argument("--force", action="store_true", help="publish a new version even where nothing changed")
    push.set_defaults(run=run_push)

    status = actions.add_parser("status", help="a table of devices: online, last seen, config applied vs pending, battery, link")
    status.add_argument("site", type=Path, help="site file")
    status.add_argument("--broker", type=broker_url, default=None, help="site broker (default: the site file's)")
    status.add_argument("--json", action="store_true", help="one JSON object per device")
    status.set_defaults(run=run_status)


def run_validate(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            config = load_checked_site(path)
        except ConfigError as exc:
            failed += 1
            print("\n".join(exc.messages))
            continue
        print(f"{path}: ok ({len(config.devices)} devices, {len(config.guards)} guards, {len(config.zones)} zones)", file=sys.stderr)
    return 1 if failed else 0


def run_push(args: argparse.Namespace) -> int:
    from guardlink import topics
    from guardlink.provisioning import (
        PRIVATE_KEY_FILE,
        canonical,
        effective_config,
        load_private_key,
        sign_config,
    )

    config = load_checked_site(args.site)
    key_path = args.key or default_key_dir() / PRIVATE_KEY_FILE
    try:
        key = load_private_key(key_path)
    except FileNotFoundError:
        print(f"guardlink config push: no signing key at {key_path}; create one with `guardlink keys init`", file=sys.stderr)
        return 1
    except PermissionError as exc:
        print(f"guardlink config push: {exc}", file=sys.stderr)
        return 1
    devices = [d for d in config.devices if not args.device or d.id in args.device]
    unknown = set(args.device or ()) - {d.id for d in devices}
    if unknown:
        print(f"guardlink config push: no such device(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    site = config.site.id
    with Session(args.broker or BrokerUrl.parse(config.broker), config.site.id) as session:
        current = session.retained([topics.device_config(site, d.id) for d in devices])
        now = datetime.now(timezone.utc).isoformat()
        print(f"{'DEVICE':<16}{'VERSION':>8}  RESULT")
        for device in devices:
            topic = topics.device_config(site, device.id)
            wanted = effective_config(device)
            previous = json.loads(current[topic]) if topic in current else None
            if previous and not args.force and canonical(previous.get("config", {})) == canonical(wanted):
                print(f"{device.id:<16}{previous.get('version', 0):>8}  unchanged")
                continue
            version = (previous or {}).get("version", 0) + 1
            signed = sign_config(key, site, device.id, version, wanted, now)
            session.publish(topic, signed.to_json(), retain=True)
            print(f"{device.id:<16}{version:>8}  pushed")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from guardlink import topics

    config = load_checked_site(args.site)
    site = config.site.id
    wanted = []
    for d in config.devices:
        wanted += [topics.device_state(site, d.id), topics.device_config(site, d.id), topics.device_config_applied(site, d.id)]
    with Session(args.broker or BrokerUrl.parse(config.broker), config.site.id) as session:
        found = session.retained(wanted)
    rows = [_status_row(config, d.id, found) for d in config.devices]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"{'DEVICE':<14}{'DRIVER':<20}{'STATE':<9}{'LAST SEEN':<14}{'CONFIG APPLIED/PENDING':<30}{'BATTERY':>8}{'LINK':>6}")
    for r in rows:
        config_text = f"{r['config_applied'] if r['config_applied'] is not None else '-'} / {r['config_pending'] or '-'}"
        if r["config_refused"]:
            config_text += f" (refused: {r['config_refused']})"
        battery = f"{r['battery']:.0f}%" if r["battery"] is not None else "-"
        print(
            f"{r['device']:<14}{r['driver']:<20}{r['state']:<9}{_ago(r['last_seen']):<14}{config_text:<30}"
            f"{battery:>8}{r['linkquality'] if r['linkquality'] is not None else '-':>6}"
        )
    return 0


def _status_row(config: SiteConfig, device_id: str, found: dict[str, bytes]) -> dict[str, object]:
    from guardlink import topics

    site = config.site.id
    device = config.device(device_id)

    def doc(topic: str) -> dict[str, object]:
        try:
            value = json.loads(found[topic]) if topic in found else {}
        except ValueError:
            value = {}
        return value if isinstance(value, dict) else {}

    state, pending, applied = doc(topics.device_state(site, device_id)), doc(topics.device_config(site, device_id)), doc(topics.device_config_applied(site, device_id))
    return {
        "device": device_id,
        "driver": device.driver,
        "state": "unknown" if not state else "online" if state.get("online") else "offline",
        "last_seen": state.get("last_seen"),
        "battery": state.get("battery"),
        "linkquality": state.get("linkquality"),
        "config_pending": pending.get("version"),
        "config_applied": applied.get("version") if applied.get("status") == "applied" else None,
        "config_refused": applied.get("reason") if applied.get("status") == "refused" else None,
    }


def _ago(stamp: object) -> str:
    if not isinstance(stamp, str):
        return "never"
    seconds = max(0.0, time.time() - datetime.fromisoformat(stamp).timestamp())
    return f"{seconds:.0f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago" if seconds < 7200 else f"{seconds / 3600:.0f} h ago"


class Session:
    """A short paho session for installer commands: read retained documents, publish retained ones."""

    def __init__(self, broker: BrokerUrl, site: str) -> None:
        from gateway.connection import threaded_client
        from guardlink import topics

        self.broker = broker
        self._messages: dict[str, bytes] = {}
        self._marker = topics.installer_marker(site, str(time.time_ns()))
        self._done = threading.Event()
        self._connected = threading.Event()
        self._client = threaded_client(broker)
        self._client.on_connect = lambda c, u, f, reason, p: self._connected.set() if not reason.is_failure else None
        self._client.on_message = self._on_message

    def __enter__(self) -> Session:
        try:
            self._client.connect(self.broker.host, self.broker.port)
        except OSError as exc:
            raise SystemExit(f"cannot reach the site broker {self.broker}: {exc}") from None
        self._client.loop_start()
        if not self._connected.wait(10):
            self._client.loop_stop()
            raise SystemExit(f"the site broker {self.broker} did not accept the connection (check address and credentials)")
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_message(self, client: object, userdata: object, message: object) -> None:
        if message.topic == self._marker:
            self._done.set()
        elif message.retain and message.payload:
            self._messages[message.topic] = message.payload

    def retained(self, topics: list[str], timeout_s: float = 10.0) -> dict[str, bytes]:
        """The retained document of each topic that has one."""
        self._client.subscribe([(t, 1) for t in topics] + [(self._marker, 1)])
        # The broker sends retained messages on subscribing, before it handles anything published after.
        self._client.publish(self._marker, b"", qos=1)
        if not self._done.wait(timeout_s):
            raise SystemExit(f"no answer from the site broker {self.broker} within {timeout_s:.0f} s")
        return dict(self._messages)

    def publish(self, topic: str, payload: bytes, *, retain: bool) -> None:
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)
        if not info.is_published():
            raise SystemExit(f"the site broker {self.broker} did not acknowledge {topic}")
