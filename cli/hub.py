"""`guardlink hub`: run the district command centre, and manage its users (`hub user add|list|disable|token`)."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from cli import broker_url, listen_address

ROLES = ("dispatcher", "chief", "viewer", "site")


def register(commands: argparse._SubParsersAction) -> None:
    hub = commands.add_parser("hub", help="the district command centre: run it, manage its users")
    hub.add_argument("--config", type=Path, default=None, help="district file, e.g. firmware_configs/districts/hohhot-xincheng.yaml")
    hub.add_argument("--database", dest="hub_database", default=None, help="database URL (default: the district file's): sqlite:///path or postgresql://user@host:port/db")
    hub.add_argument("--listen", dest="hub_listen", type=listen_address, default=None, help="HTTP host:port (default: the district file's; port 0: any free port)")
    hub.add_argument("--broker", dest="hub_broker", type=hub_broker, default=None,
                     help="district broker mqtt://[user:password@]host:port, or a NATS cluster nats://host:port[,host:port...] (this process is then one of its hub workers; default: the district file's)")
    hub.set_defaults(run=run_hub, log_level="INFO")
    hub_commands = hub.add_subparsers(dest="hub_command", required=False, metavar="COMMAND")
    _register_users(hub_commands)


# --- running the hub (hub.service) ---------------------------------------------------------------------------------


def hub_broker(text: str) -> object:
    """argparse type: mqtt://host:port (a BrokerUrl), or nats://host:port[,host:port...] (kept as written)."""
    if not text.startswith("nats://"):
        return broker_url(text)
    from hub.intake_nats import parse_servers

    try:
        parse_servers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def run_hub(args: argparse.Namespace) -> int:
    if args.config is None:
        print("guardlink hub: --config DISTRICT.yaml is needed to run the hub", file=sys.stderr)
        return 2
    import asyncio

    from guardlink.districtconfig import load_district
    from hub.service import serve

    config = load_district(args.config)

    def listening(url: str) -> None:
        print(f"guardlink hub: district {config.district.id} at {url} (API docs at {url}/docs)", file=sys.stderr, flush=True)

    from hub.intake_nats import WorkerRefused

    try:
        asyncio.run(serve(config, database=args.hub_database, listen=args.hub_listen, broker=args.hub_broker, on_listening=listening))
    except WorkerRefused as exc:
        print(f"guardlink hub: {exc}", file=sys.stderr)
        return 2
    return 0


# --- users ---------------------------------------------------------------------------------------------------------


def _register_users(hub_commands: argparse._SubParsersAction) -> None:
    where = argparse.ArgumentParser(add_help=False)
    source = where.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, dest="user_config", help="district file (its database)")
    source.add_argument("--database", help="database URL: sqlite:///path or postgresql://user@host:port/db")

    user = hub_commands.add_parser("user", help="add, list and disable users; issue API tokens")
    user.set_defaults(log_level="WARNING")
    actions = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")

    add = actions.add_parser("add", parents=[where], help="add a user")
    add.add_argument("name")
    add.add_argument(
        "--role", choices=ROLES, required=True,
        help="dispatcher: the whole district; chief: their communities; viewer: read only; site: a site's edge uploading its evidence (token only)",
    )
    add.add_argument("--community", action="append", default=[], help="a community the chief leads (repeat for several)")
    add.add_argument("--site", help="the site a site account speaks for (its edge's upload token: `hub user token NAME`)")
    password = add.add_mutually_exclusive_group()
    password.add_argument("--password-file", type=Path, help="read the password from the file's first line ('-': standard input); default: prompt")
    password.add_argument("--no-password", action="store_true", help="an account for integrations: API tokens only, no login")
    add.set_defaults(run=user_add)

    listing = actions.add_parser("list", parents=[where], help="list users, their roles, communities and tokens")
    listing.set_defaults(run=user_list)

    disable = actions.add_parser("disable", parents=[where], help="disable a user: sessions end, tokens stop working")
    disable.add_argument("name")
    disable.set_defaults(run=user_disable)

    token = actions.add_parser("token", parents=[where], help="issue a new API token (printed once)")
    token.add_argument("name")
    token.set_defaults(run=user_token)


def _accounts(args: argparse.Namespace):
    from guardlink.districtconfig import load_district
    from hub.accounts import Accounts
    from hub.database import make_engine, migrate

    config = load_district(args.user_config) if args.user_config else None
    url = args.database or config.database_url()
    engine = make_engine(url)
    migrate(engine)
    return Accounts(engine), config


def _operator() -> str | None:
    """Who runs the command, for the audit trail."""
    try:
        return getpass.getuser()
    except Exception:  # no login name in this environment
        return None


def _read_password(args: argparse.Namespace) -> str:
    if args.password_file is not None:
        text = sys.stdin.read() if str(args.password_file) == "-" else args.password_file.read_text()
        return text.splitlines()[0] if text.strip() else ""
    if not sys.stdin.isatty():
        raise SystemExit("guardlink hub user add: no terminal to ask for the password: use --password-file FILE (or - for standard input)")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("guardlink hub user add: the passwords differ")
    return first


def user_add(args: argparse.Namespace) -> int:
    from hub.accounts import AccountError, Role

    accounts, config = _accounts(args)
    if config is not None:
        known = [c.id for c in config.communities]
        unknown = [c for c in args.community if c not in known]
        if unknown:
            print(f"{args.user_config}: no community {', '.join(map(repr, unknown))} (defined: {', '.join(known) or 'none'})", file=sys.stderr)
            return 1
        if args.site is not None and args.site not in config.sites():
            print(f"{args.user_config}: no site {args.site!r} in any community (placed: {', '.join(config.sites()) or 'none'})", file=sys.stderr)
            return 1
    password = None if args.no_password or args.role == "site" else _read_password(args)
    try:
        accounts.add_user(args.name, Role(args.role), communities=args.community, password=password, actor=_operator(), site=args.site)
    except AccountError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"added {args.role} {args.name}" + (f" ({', '.join(args.community or [args.site])})" if args.community or args.site else ""), file=sys.stderr)
    return 0


def user_list(args: argparse.Namespace) -> int:
    accounts, _config = _accounts(args)
    rows = [("NAME", "ROLE", "COMMUNITIES", "STATE", "TOKENS", "CREATED")]
    rows += [
        (u.name, u.role.value, ",".join(u.communities) or (f"site {u.site}" if u.site else "-"), "disabled" if u.disabled else "enabled", str(u.tokens), u.created_at.strftime("%Y-%m-%d %H:%M"))
        for u in accounts.users()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def user_disable(args: argparse.Namespace) -> int:
    from hub.accounts import AccountError

    accounts, _config = _accounts(args)
    try:
        accounts.disable_user(args.name, actor=_operator())
    except AccountError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"disabled {args.name}: their sessions ended and their tokens no longer work", file=sys.stderr)
    return 0


def user_token(args: argparse.Namespace) -> int:
    from hub.accounts import AccountError

    accounts, _config = _accounts(args)
    try:
        token = accounts.issue_token(args.name, actor=_operator())
    except AccountError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(token)
    print(f"the token for {args.name} is shown this once: send it as `Authorization: Bearer <token>`", file=sys.stderr)
    return 0
