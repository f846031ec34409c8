"""The one place that keeps an aiomqtt client connected: reconnect with capped exponential backoff."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiomqtt

from guardlink.siteconfig import BrokerUrl

log = logging.getLogger(__name__)

Session = Callable[[aiomqtt.Client], Awaitable[None]]


async def stay_connected(
    broker: BrokerUrl,
    session: Session,
    *,
    identifier: str,
    clean_session: bool = True,
    will: aiomqtt.Will | None = None,
    keepalive: int = 15,
    min_backoff_s: float = 0.1,
    max_backoff_s: float = 5.0,
) -> None:
    """Run `session(client)` on a connection to `broker`, reconnecting whenever it drops, until `session` returns."""
    delay = min_backoff_s
    while True:
        try:
            async with aiomqtt.Client(
                broker.host,
                broker.port,
                identifier=identifier,
                username=broker.username,
                password=broker.password,
                clean_session=clean_session,
                will=will,
                keepalive=keepalive,
                max_queued_outgoing_messages=None,
            ) as client:
                log.info("event=mqtt_connected broker=%s client=%s", broker, identifier)
                delay = min_backoff_s
                await session(client)
                return
        except aiomqtt.MqttError as exc:
            log.warning("event=mqtt_disconnected broker=%s client=%s error=%r retry_in_s=%.1f", broker, identifier, str(exc), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_backoff_s)
