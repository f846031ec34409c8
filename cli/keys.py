"""`guardlink keys init`: the site signing key for configuration pushes."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def default_key_dir() -> Path:
    """$XDG_CONFIG_HOME/guardlink/keys (~/.config/guardlink/keys)."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "guardlink" / "keys"


def register(commands: argparse._SubParsersAction) -> None:
    keys = commands.add_parser("keys", help="the site signing key")
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    init = actions.add_parser("init", help="create the Ed25519 site signing key (private key readable by you only)")
    init.add_argument("--dir", type=Path, default=None, help="where to put site-signing.key and .pub (default: ~/.config/guardlink/keys)")
    init.add_argument("--force", action="store_true", help="replace an existing key (devices must then be given the new public key)")
    init.set_defaults(run=run_init)


def run_init(args: argparse.Namespace) -> int:
    from guardlink.provisioning import create_keys

    directory = args.dir or default_key_dir()
    try:
        private_path, public_path = create_keys(directory, force=args.force)
    except FileExistsError as exc:
        print(f"guardlink keys init: {exc}", file=sys.stderr)
        return 1
    print(f"private key: {private_path} (mode 600: keep it on the installer's machine)", file=sys.stderr)
    print(f"public key:  {public_path} (give this to every device)", file=sys.stderr)
    print(public_path.read_text().strip())
    return 0
