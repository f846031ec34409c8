"""The last word of a clean stop: the offline status a Last Will would have given.

A broker publishes a client's Last Will only when the connection breaks; a clean DISCONNECT (Ctrl-C, SIGTERM,
`systemctl stop`) discards it. Without this, a site stopped on purpose would stay "online" (retained) until the
police notice missing heartbeats, and Home Assistant would show it available.
"""

from __future__ import annotations

import asyncio
import logging

from gateway.connection import Client, MqttError

log = logging.getLogger(__name__)


async def say_offline(client: Client, topic: str, payload: bytes, timeout_s: float = 2.0) -> None:
    """Publish the retained offline status before disconnecting; a broker already gone is logged, not raised."""
    try:
        await asyncio.wait_for(client.publish(topic, payload, qos=1, retain=True), timeout_s)
        log.info("event=offline_published topic=%s", topic)
    except (MqttError, TimeoutError) as exc:
        log.warning("event=offline_not_published topic=%s error=%r", topic, str(exc) or type(exc).__name__)
