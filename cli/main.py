"""The `guardlink` command line: global options, and one module per subcommand in cli/."""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `guardlink` console script. Ctrl-C at any moment, even while the modules load, ends quietly."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    from guardlink.siteconfig import ConfigError

    args = parser().parse_args(argv)
    default_level = getattr(logging, getattr(args, "log_level", "WARNING"))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose >= 2 else min(logging.INFO, default_level) if args.verbose else default_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        return args.run(args)
    except ConfigError as exc:
        for message in exc.messages:
            print(message, file=sys.stderr)
        return 1


def parser() -> argparse.ArgumentParser:
    """The whole command line."""
    from cli import bench, broker_config, cap, config, demo, edge, hotspots, hub, keys, police, registry, report, schema, simulate, vision

    top = argparse.ArgumentParser(prog="guardlink", description="Edge gateway linking site guards and police over MQTT.")
    top.add_argument("-v", "--verbose", action="count", default=0, help="more log output on stderr (-vv for debug)")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (demo, edge, hub, police, simulate, bench, schema, config, keys, broker_config, vision, cap, hotspots, registry, report):
        command.register(commands)
    return top


if __name__ == "__main__":
    sys.exit(main())
