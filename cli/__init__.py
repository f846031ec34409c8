"""The `guardlink` subcommands: one module each, each with `register(commands)` adding its parser."""

from __future__ import annotations

import argparse
from pathlib import Path

from guardlink.siteconfig import BrokerUrl, SiteConfig, load_site, parse_listen


def broker_url(text: str) -> BrokerUrl:
    """argparse type for mqtt://host:port."""
    try:
        return BrokerUrl.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def listen_address(text: str) -> str:
    """argparse type for host:port."""
    try:
        parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def load_checked_site(path: Path) -> SiteConfig:
    """Load a site file, checking driver names against the registry; ConfigError lists every problem."""
    from device_drivers.registry import DRIVERS

    return load_site(path, known_drivers=DRIVERS.keys())
