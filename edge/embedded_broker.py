"""An in-process MQTT broker (amqtt) so a demo or a single-box site needs no server installed."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from amqtt.broker import Broker

from guardlink.siteconfig import BrokerUrl


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@asynccontextmanager
async def embedded_broker(host: str = "127.0.0.1", port: int | None = None) -> AsyncIterator[BrokerUrl]:
    """Run an amqtt broker on `host:port` (a free port when None) for the duration of the block."""
    for name in ("amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.WARNING)
    port = port or free_tcp_port(host)
    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 200}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
    )
    await broker.start()
    try:
        yield BrokerUrl(host=host, port=port)
    finally:
        await broker.shutdown()
