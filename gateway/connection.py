"""The one place that keeps an aiomqtt client connected: reconnect with capped exponential backoff."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt

from guardlink.siteconfig import BrokerUrl

log = logging.getLogger(__name__)


class _BufferedSocket:
    """paho reads each packet's header a byte at a time, one recv() each: here one recv() takes what the kernel
    holds and the rest is handed out from memory. `pending()` (what aiomqtt asks of TLS sockets) makes aiomqtt
    read every buffered packet in the same wake-up."""

    def __init__(self, sock: Any) -> None:  # noqa: ANN401
        self._sock = sock
        self._buffer = b""
        self._at = 0

    def recv(self, size: int) -> bytes:
        if self._at >= len(self._buffer):
            data = self._sock.recv(65536)
            if not data:
                return data  # the broker closed the connection
            self._buffer, self._at = data, 0
        chunk = self._buffer[self._at : self._at + size]
        self._at += len(chunk)
        return chunk

    def pending(self) -> int:
        return len(self._buffer) - self._at + (self._sock.pending() if hasattr(self._sock, "pending") else 0)

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401
        return getattr(self._sock, name)


class Client(aiomqtt.Client):
    """aiomqtt's client with what at-least-once intake needs and aiomqtt 2 does not expose.

    - `manual_ack=True`: a QoS 1 message is acknowledged only when `ack(message)` is called, after it
      has been handled durably; until then the broker keeps it and redelivers it after a crash.
    - `message.dup` tells a redelivered message (the broker resends unacknowledged ones with DUP set).
    - Throughput: incoming packets are read from a buffer (one recv() per wake-up, not several per packet),
      `batches()` hands out everything read in one wake-up, and its acknowledgements leave in one write.
    """

    def __init__(self, *args: Any, manual_ack: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client.manual_ack_set(manual_ack)
        self._acks: list[int] = []

    def ack(self, message: aiomqtt.Message) -> None:
        """Acknowledge a message received with manual_ack (no-op for QoS 0); the acknowledgements of one turn of
        the event loop (a batch of messages) go out together right after it."""
        if message.qos == 1:
            if not self._acks:
                self._loop.call_soon(self._send_acks)
            self._acks.append(message.mid)
        elif message.qos > 1:
            self._client.ack(message.mid, message.qos)

    async def batches(self) -> AsyncIterator[list[aiomqtt.Message]]:
        """Messages as they arrive, each with whatever else has arrived by then: one wake-up per batch."""
        async for message in self.messages:
            batch = [message]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            yield batch

    def _send_acks(self) -> None:
        mids, self._acks = self._acks, []
        if self._client.is_connected():
            # PUBACKs in one packet write (MQTT 3.1.1 and 5: 0x40, remaining length 2, packet id), as paho's ack() does one by one.
            packet = b"".join(struct.pack("!BBH", mqtt.PUBACK, 2, mid) for mid in mids)
            self._client._packet_queue(mqtt.PUBACK, packet, 0, 0)  # noqa: SLF001

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:  # noqa: ANN401
        client._sock = _BufferedSocket(sock)  # noqa: SLF001 - before aiomqtt registers the reader
        super()._on_socket_open(client, userdata, client._sock)  # noqa: SLF001

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
