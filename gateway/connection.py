"""The one place that keeps an aiomqtt client connected: reconnect with capped exponential backoff."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt

from guardlink.siteconfig import BrokerUrl

log = logging.getLogger(__name__)


class Client(aiomqtt.Client):
    """aiomqtt's client with what at-least-once intake needs and aiomqtt 2 does not expose.

    - `manual_ack=True`: a QoS 1 message is acknowledged only when `ack(message)` is called, after it
      has been handled durably; until then the broker keeps it and redelivers it after a crash.
    - `message.dup` tells a redelivered message (the broker resends unacknowledged ones with DUP set).
    """

    def __init__(self, *args: Any, manual_ack: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client.manual_ack_set(manual_ack)

    def ack(self, message: aiomqtt.Message) -> None:
        """Acknowledge a message received with manual_ack (no-op for QoS 0)."""
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:  # noqa: ANN401
        converted = aiomqtt.Message._from_paho_message(message)  # noqa: SLF001
        converted.dup = bool(message.dup)
        try:
            self._queue.put_nowait(converted)
        except asyncio.QueueFull:
            log.warning("event=mqtt_queue_full topic=%s", message.topic)


Session = Callable[[Client], Awaitable[None]]


async def stay_connected(
    broker: BrokerUrl,
    session: Session,
    *,
    identifier: str,
    clean_session: bool = True,
    manual_ack: bool = False,
    will: aiomqtt.Will | None = None,
    keepalive: int = 15,
    min_backoff_s: float = 0.1,
    max_backoff_s: float = 5.0,
) -> None:
    """Run `session(client)` on a connection to `broker`, reconnecting whenever it drops, until `session` returns."""
    delay = min_backoff_s
    while True:
        try:
            async with Client(
                broker.host,
                broker.port,
                identifier=identifier,
                username=broker.username,
                password=broker.password,
                clean_session=clean_session,
                manual_ack=manual_ack,
                will=will,
                keepalive=keepalive,
            ) as client:
                log.info("event=mqtt_connected broker=%s client=%s", broker, identifier)
                delay = min_backoff_s
                await session(client)
                return
        except aiomqtt.MqttError as exc:
            log.warning("event=mqtt_disconnected broker=%s client=%s error=%r retry_in_s=%.1f", broker, identifier, str(exc), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_backoff_s)
