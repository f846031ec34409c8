"""The `guardlink` subcommands: one module each, each with `register(commands)` adding its parser.

Imports here are light (the contract loads when an argument is parsed), so Ctrl-C while `guardlink` starts ends quietly.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from guardlink.siteconfig import BrokerUrl, SiteConfig


def broker_url(text: str) -> BrokerUrl:
    """argparse type for mqtt://host:port."""
    from guardlink.siteconfig import BrokerUrl

    try:
        return BrokerUrl.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def listen_address(text: str) -> str:
    """argparse type for host:port."""
    from guardlink.siteconfig import parse_listen

    try:
        parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def seconds(text: str) -> float:
    """argparse type: a positive number of seconds (0, negative, inf and nan are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number of seconds")
    return value


def load_checked_site(path: Path) -> SiteConfig:
    """Load a site file, checking driver names against the registry; ConfigError lists every problem."""
    from device_drivers.registry import DRIVERS
    from guardlink.siteconfig import load_site

    return load_site(path, known_drivers=DRIVERS.keys())
