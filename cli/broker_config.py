"""`guardlink broker-config SITE --out DIR`: mosquitto configuration, passwords and ACL for a site."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli import load_checked_site


def register(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser("broker-config", help="generate a locked-down mosquitto configuration for a site")
    cmd.add_argument("site", type=Path, nargs="?", help="site file (or --district for the district broker)")
    cmd.add_argument("--district", type=Path, help="district file: the district (police) broker's accounts instead, the hub's and one per site")
    cmd.add_argument("--out", type=Path, required=True, help="directory for mosquitto.conf, passwd, acl, credentials.txt")
    cmd.add_argument("--bind", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    cmd.add_argument("--port", type=int, default=1883, help="plain MQTT port (default 1883)")
    cmd.add_argument("--tls-ca", type=Path, help="CA certificate: with --tls-cert and --tls-key adds a TLS listener")
    cmd.add_argument("--tls-cert", type=Path, help="server certificate")
    cmd.add_argument("--tls-key", type=Path, help="server private key")
    cmd.add_argument("--tls-port", type=int, default=8883, help="TLS port (default 8883)")
    cmd.add_argument(
        "--rotate", action="append", default=[], metavar="ACCOUNT",
        help="give ACCOUNT a new password (repeatable); every other account keeps the one in an existing credentials.txt",
    )
    cmd.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from edge.broker_access import DURABILITY_CONF, Tls, users_for, write_broker_config

    config = load_checked_site(args.site) if args.site is not None else None
    tls_parts = [args.tls_ca, args.tls_cert, args.tls_key]
    if any(tls_parts) and not all(tls_parts):
        print("guardlink broker-config: a TLS listener needs --tls-ca, --tls-cert and --tls-key together", file=sys.stderr)
        return 2
    missing = [str(p) for p in tls_parts if p and not p.is_file()]
    if missing:
        print(f"guardlink broker-config: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    tls = Tls(args.tls_ca, args.tls_cert, args.tls_key, args.tls_port) if all(tls_parts) else None
    if args.district is not None or args.site is None:
        return _district(args, tls)
    unknown = sorted(set(args.rotate) - {u.name for u in users_for(config)})
    if unknown:
        print(f"guardlink broker-config: --rotate: no account {', '.join(map(repr, unknown))} for this site", file=sys.stderr)
        return 2
    written = write_broker_config(
        config, args.out, bind=args.bind, port=args.port, durability=DURABILITY_CONF.read_text(), tls=tls, rotate=args.rotate
    )
    out = args.out.resolve()
    kept = len(written.passwords) - len(written.created) - len(written.rotated)
    print(
        f"wrote {out}/mosquitto.conf, passwd, acl, credentials.txt and edge.password for {len(written.passwords)} accounts: "
        f"{kept} kept their password, {len(written.created)} new{', ' + str(len(written.rotated)) + ' rotated' if written.rotated else ''}",
        file=sys.stderr,
    )
    for warning in written.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"start the broker:  mosquitto -c {out}/mosquitto.conf", file=sys.stderr)
    print(
        f"run the edge with: guardlink edge --config {args.site} --broker 'mqtt://edge@HOST:{args.port}?password_file={out}/edge.password'",
        file=sys.stderr,
    )
    return 0


def _district(args: argparse.Namespace, tls: object) -> int:
    from edge.broker_access import DURABILITY_CONF, mosquitto_conf, password_hash, read_credentials
    from guardlink.districtconfig import load_district
    from hub.broker_access import write_district_broker_config

    if args.district is None or args.site is not None:
        print("guardlink broker-config: give a site file, or --district DISTRICT.yaml (not both)", file=sys.stderr)
        return 2
    config = load_district(args.district)
    out = args.out.resolve()
    earlier = {k: v for k, v in read_credentials(out / "credentials.txt").items() if k not in args.rotate}
    passwords = write_district_broker_config(
        config, out, earlier=earlier, password_hash=password_hash,
        conf=lambda at: mosquitto_conf(at, bind=args.bind, port=args.port, durability=DURABILITY_CONF.read_text(), tls=tls),
    )
    print(f"wrote {out}/mosquitto.conf, passwd, acl and credentials.txt for the hub and {len(passwords) - 1} sites", file=sys.stderr)
    print(f"start the broker: mosquitto -c {out}/mosquitto.conf", file=sys.stderr)
    print(f"each site's edge logs in as its site id: police broker mqtt://SITE:PASSWORD@HOST:{args.port}; the hub as 'hub'", file=sys.stderr)
    return 0
