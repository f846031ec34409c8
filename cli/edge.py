"""`guardlink edge`: run a site's edge node against real brokers."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cli import broker_url, listen_address, load_checked_site
from gateway.lock import InUse
from guardlink.alarmcentre import KeyUnavailable
from guardlink.siteconfig import BrokerUrl, Metrics, SiteConfig

if TYPE_CHECKING:
    from edge.node import EdgeNode

log = logging.getLogger(__name__)


def register(commands: argparse._SubParsersAction) -> None:
    edge = commands.add_parser("edge", help="run an edge node for a site against real brokers")
    edge.add_argument("--config", type=Path, required=True, help="site file, e.g. firmware_configs/sites/school.yaml")
    edge.add_argument("--broker", type=broker_url, default=None, help="site broker mqtt://host:port (default: from the site file)")
    edge.add_argument("--police-broker", type=broker_url, default=None, help="police broker mqtt://host:port (default: from the site file)")
    edge.add_argument("--outbox", type=Path, default=None, help="outbox database (default: the site file's, else $XDG_STATE_HOME/guardlink/<site>/outbox.db)")
    edge.add_argument(
        "--metrics", type=listen_address, default=None, metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (default: the site file's metrics.listen, else off)",
    )
    edge.set_defaults(run=run, log_level="INFO")


def run(args: argparse.Namespace) -> int:
    # The outbox writer thread hands each commit back to the event loop: short GIL turns keep escalation latency low.
    sys.setswitchinterval(0.0005)
    from edge.node import EdgeNode
    from gateway.telemetry import settings_from_environment

    config = load_checked_site(args.config)
    config = config.model_copy(update={"telemetry": settings_from_environment(config.telemetry, os.environ)})
    if args.metrics:
        config = config.model_copy(update={"metrics": Metrics(listen=args.metrics)})
    node = EdgeNode(
        config,
        site_broker=args.broker or BrokerUrl.parse(config.broker),
        police_broker=args.police_broker or BrokerUrl.parse(config.police.broker),
        outbox_path=args.outbox or default_outbox(config),
    )
    try:
        asyncio.run(_until_stopped(node))
    except (InUse, KeyUnavailable) as exc:
        print(f"guardlink edge: {exc}", file=sys.stderr)
        return 1
    return 0


async def _until_stopped(node: EdgeNode) -> None:
    """Run the node; SIGTERM (systemctl stop) stops it as cleanly as Ctrl-C: offline published, outbox closed."""
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    try:
        await node.run()
    except asyncio.CancelledError:
        log.info("event=edge_stopped site=%s", node.config.site.id)  # Ctrl-C or SIGTERM: a normal stop, exit 0


def default_outbox(config: SiteConfig) -> Path:
    """The site file's outbox path, else $XDG_STATE_HOME/guardlink/<site>/outbox.db."""
    if config.outbox:
        return Path(config.outbox).expanduser()
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "guardlink" / config.site.id / "outbox.db"
