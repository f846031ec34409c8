"""The one MQTT adapter: every connection guardlink makes is built here, on paho-mqtt 2's public API.

- `Client`: an asyncio client (`async with Client(broker, identifier=...)`) driven by the running loop through
  paho's external-loop callbacks (`on_socket_open`, `loop_read`, `loop_write`, `loop_misc`). It hands out
  `Message`s carrying paho's `dup` flag, and with `manual_ack=True` acknowledges QoS 1/2 messages only when
  `ack(message)` is called, after they have been handled durably; acknowledgements always leave in the order
  the messages arrived (MQTT 3.1.1 [MQTT-4.6.0-2]): one acknowledged early waits for those before it.
- `stay_connected`: runs a session on a connection, reconnecting with capped backoff, and says at ERROR level
  when another connection keeps taking our client id.
- `threaded_client`: a paho client for code that runs paho's own network thread (simulators, command line,
  benchmarks, camera MQTT sources).

TLS (`mqtts://`, CA file, client certificate and key) and the username and password are applied in one
place, `_sign_in`, for all of them. The password is read from its source only there and never logged.
Every connection sets TCP_NODELAY (`_no_delay`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as mqtt
from paho.mqtt.client import topic_matches_sub

from guardlink.siteconfig import BrokerUrl

log = logging.getLogger(__name__)

PahoClient = mqtt.Client  # for the type hints of threaded_client's users
PahoMessage = mqtt.MQTTMessage

CONNECT_TIMEOUT_S = 10.0
READS_PER_WAKEUP = 256  # packets read in one turn of the event loop before others get theirs
TAKEOVER_WITHIN_S = 3.0  # a connection the broker closes this soon after accepting it, repeatedly: another has our id
TAKEOVER_REPEATS = 3
TAKEOVER_REPORT_EVERY_S = 60.0


class MqttError(Exception):
    """The connection failed or broke; the message says which broker and why."""


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether `topic` matches an MQTT subscription filter (`+` and `#` wildcards)."""
    return topic_matches_sub(topic_filter, topic)


@dataclass(frozen=True, slots=True)
class Topic:
    """A message's topic."""

    value: str

    def matches(self, topic_filter: str) -> bool:
        return topic_matches_sub(topic_filter, self.value)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True, eq=False)
class Message:
    """A received message; `dup` is set when the broker sends it again (it was not acknowledged before)."""

    topic: Topic
    payload: bytes
    qos: int
    retain: bool
    mid: int
    dup: bool


@dataclass(frozen=True, slots=True)
class Will:
    """The Last Will the broker publishes when the connection is lost without a DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


def _sign_in(client: mqtt.Client, broker: BrokerUrl) -> None:
    """Credentials and TLS of `broker` onto a paho client (before it connects)."""
    password = broker.secret()
    if broker.username is not None or password is not None:
        client.username_pw_set(broker.username or "", password)
    if broker.tls:
        # ca_file None: the system's CAs; the broker's name (or IP) must match its certificate.
        client.tls_set(ca_certs=broker.ca_file, certfile=broker.cert_file, keyfile=broker.key_file, cert_reqs=ssl.CERT_REQUIRED)


def _no_delay(sock: Any) -> None:
    """TCP_NODELAY: a small packet (a press, an acknowledgement, a receipt) leaves at once. With Nagle's algorithm it waits
    for the TCP ACK of the previous one, which the peer may delay by up to 40 ms."""
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):  # an ssl.SSLSocket is one too
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def threaded_client(broker: BrokerUrl, *, client_id: str = "", clean_session: bool | None = None) -> mqtt.Client:
    """A paho client with `broker`'s credentials and TLS set; connect it with `client.connect(broker.host, broker.port)`."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session)
    _sign_in(client, broker)
    client.on_socket_open = lambda client, userdata, sock: _no_delay(sock)
    return client


class Client:
    """An MQTT connection on the running asyncio loop: `async with Client(broker, identifier=...) as client`.

    Messages come from `client.messages` (one at a time) or `client.batches()` (everything read in one wake-up);
    one consumer at a time. With `manual_ack`, every QoS 1/2 message must be passed to `ack` once handled.
    """

    def __init__(
        self,
        broker: BrokerUrl,
        *,
        identifier: str = "",
        clean_session: bool = True,
        manual_ack: bool = False,
        will: Will | None = None,
        keepalive: int = 15,
    ) -> None:
        self.broker = broker
        self.identifier = identifier
        self.manual_ack = manual_ack
        self.keepalive = keepalive
        self.connected_at: float | None = None  # time.monotonic() of the CONNACK
        self.lost: MqttError | None = None  # why the connection ended
        self.dropped_at: float | None = None  # time.monotonic() when the broker or the network ended it (not we)
        self._closing = False
        self._paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=identifier, clean_session=clean_session, reconnect_on_failure=False)
        _sign_in(self._paho, broker)
        self._paho.manual_ack_set(manual_ack)
        if will is not None:
            self._paho.will_set(will.topic, will.payload, will.qos, will.retain)
        self._paho.on_connect = self._on_connect
        self._paho.on_disconnect = self._on_disconnect
        self._paho.on_message = self._on_message
        self._paho.on_publish = self._on_publish
        self._paho.on_subscribe = self._on_subscribe
        self._paho.on_socket_open = self._on_socket_open
        self._paho.on_socket_close = self._on_socket_close
        self._paho.on_socket_register_write = self._on_socket_register_write
        self._paho.on_socket_unregister_write = self._on_socket_unregister_write
        self._loop = asyncio.get_running_loop()  # a Client is made and used on one running loop
        self._connack: asyncio.Future[None] = self._loop.create_future()
        self._misc: asyncio.Task[None] | None = None
        self._fd: int | None = None
        self._packets = 0  # packets handled, to tell a read that made progress
        self._inbox: deque[Message] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._publishing: dict[int, asyncio.Future[None]] = {}
        self._subscribing: dict[int, asyncio.Future[list[Any]]] = {}
        self._unacked: deque[Message] = deque()  # QoS 1/2 messages in receipt order, until acknowledged
        self._awaiting: dict[int, Message] = {}  # mid -> message, for those
        self._handled: set[int] = set()  # mids passed to ack() while an earlier message is still open

    # -- connecting ------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            # connect() blocks (TCP connect, TLS handshake): off the loop, as paho's external-loop mode allows.
            await self._loop.run_in_executor(None, self._paho.connect, self.broker.host, self.broker.port, self.keepalive)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise MqttError(f"cannot connect to {self.broker}: {exc}") from None
        except asyncio.CancelledError:
            self._close()
            raise
        try:
            await asyncio.wait_for(asyncio.shield(self._connack), CONNECT_TIMEOUT_S)
        except TimeoutError:
            self._close()
            raise MqttError(f"no answer (CONNACK) from {self.broker} within {CONNECT_TIMEOUT_S:.0f} s") from None
        except (MqttError, asyncio.CancelledError):
            self._close()
            raise
        self.connected_at = time.monotonic()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._closing = True
        if self.lost is None and self._fd is not None:
            self._paho.disconnect()
            self._paho.loop_write()  # the DISCONNECT, so the broker does not publish our Will
        self._close()

    def _close(self) -> None:
        if self._fd is not None:
            self._paho.disconnect()
            sock = self._paho.socket()
            if sock is not None:
                self._loop.remove_reader(self._fd)
                self._loop.remove_writer(self._fd)
                sock.close()
            self._fd = None
        if self._misc is not None:
            self._misc.cancel()
        self._broken(self.lost or MqttError(f"connection to {self.broker} closed"))

    # -- sending ---------------------------------------------------------------------------------

    async def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False) -> None:
        """Publish; for QoS 1/2 returns once the broker has acknowledged it. MqttError if the connection breaks first."""
        self._usable()
        info = self._paho.publish(topic, payload, qos, retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise MqttError(f"publish to {topic!r} on {self.broker} failed: {mqtt.error_string(info.rc)}")
        if qos == 0:
            return
        done = self._publishing[info.mid] = self._loop.create_future()
        await done

    async def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe; MqttError if the broker refuses (its ACL) or the connection breaks."""
        self._usable()
        rc, mid = self._paho.subscribe(topic_filter, qos)
        if rc != mqtt.MQTT_ERR_SUCCESS or mid is None:
            raise MqttError(f"subscribe to {topic_filter!r} on {self.broker} failed: {mqtt.error_string(rc)}")
        done = self._subscribing[mid] = self._loop.create_future()
        codes = await done
        if any(code.is_failure for code in codes):
            raise MqttError(f"{self.broker} refused the subscription to {topic_filter!r} for {self.identifier or 'this client'}: check the broker's ACL")

    def ack(self, message: Message) -> None:
        """Acknowledge a message received with manual_ack (QoS 0 and other connections' messages: nothing to do).

        Acknowledgements leave in receipt order: this one goes out once every message received before it is acknowledged.
        """
        if self._awaiting.get(message.mid) is not message:
            return
        self._handled.add(message.mid)
        while self._unacked and self._unacked[0].mid in self._handled:
            first = self._unacked.popleft()
            self._handled.discard(first.mid)
            del self._awaiting[first.mid]
            if self.lost is None:
                self._paho.ack(first.mid, first.qos)

    # -- receiving -------------------------------------------------------------------------------

    @property
    def messages(self) -> AsyncIterator[Message]:
        """Messages one by one as they arrive; MqttError when the connection breaks."""
        return self._one_by_one()

    async def _one_by_one(self) -> AsyncIterator[Message]:
        async for batch in self.batches():
            for message in batch:
                yield message

    async def batches(self) -> AsyncIterator[list[Message]]:
        """Messages as they arrive, each with whatever else arrived in the same read; MqttError when the connection breaks."""
        while True:
            while not self._inbox:
                if self.lost is not None:
                    raise self.lost
                self._waiter = self._loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
            batch = list(self._inbox)
            self._inbox.clear()
            yield batch

    # -- paho's callbacks, all on the loop except the socket opening (connect runs in a thread) ---

    def _on_socket_open(self, client: mqtt.Client, userdata: object, sock: Any) -> None:
        _no_delay(sock)
        fd = sock.fileno()

        def watch() -> None:
            if self.lost is not None:  # given up (cancelled, timed out) while connect() ran in its thread
                sock.close()
                return
            self._fd = fd
            self._loop.add_reader(fd, self._readable)
            self._misc = self._loop.create_task(self._keepalive())

        self._loop.call_soon_threadsafe(watch)

    def _on_socket_close(self, client: mqtt.Client, userdata: object, sock: Any) -> None:
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
            self._fd = None

    def _on_socket_register_write(self, client: mqtt.Client, userdata: object, sock: Any) -> None:
        fd = sock.fileno()
        if _running_loop() is self._loop:
            self._loop.add_writer(fd, self._writable)
        else:  # the CONNECT, queued by connect() in its thread
            self._loop.call_soon_threadsafe(lambda: self._fd == fd and self._loop.add_writer(fd, self._writable))

    def _on_socket_unregister_write(self, client: mqtt.Client, userdata: object, sock: Any) -> None:
        self._loop.remove_writer(sock.fileno())

    def _readable(self) -> None:
        for _ in range(READS_PER_WAKEUP):
            before = self._packets
            if self._paho.loop_read() != mqtt.MQTT_ERR_SUCCESS or self._packets == before:
                break
        sock = self._paho.socket()
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            self._loop.call_soon(self._readable)  # decrypted bytes wait in the TLS layer, not in the socket
        if self._inbox and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _writable(self) -> None:
        self._paho.loop_write()

    async def _keepalive(self) -> None:
        while self._paho.loop_misc() == mqtt.MQTT_ERR_SUCCESS:  # noqa: ASYNC110 - paho's keepalive wants a call every second
            await asyncio.sleep(1)

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: Any, props: object) -> None:
        self._packets += 1
        if self._connack.done():
            return
        if reason.is_failure:
            hint = "; check the username and password" if reason.value in (4, 5, 134, 135) else ""
            self._connack.set_exception(MqttError(f"{self.broker} refused the connection of {self.identifier or 'this client'}: {reason}{hint}"))
        else:
            self._connack.set_result(None)

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, reason: Any, props: object) -> None:
        if self.lost is None and self.connected_at is not None and not self._closing:
            self.lost = MqttError(f"connection to {self.broker} lost: {reason}")
            self.dropped_at = time.monotonic()
        if not self._connack.done():
            self._connack.set_exception(MqttError(f"{self.broker} closed the connection before accepting it: {reason}"))
        self._broken(self.lost or MqttError(f"connection to {self.broker} closed: {reason}"))

    def _broken(self, error: MqttError) -> None:
        """Fail whatever waits on this connection."""
        if self.lost is None:
            self.lost = error
        pending: list[asyncio.Future[Any]] = [*self._publishing.values(), *self._subscribing.values()]
        for waiting in pending:
            if not waiting.done():
                waiting.set_exception(error)
        self._publishing.clear()
        self._subscribing.clear()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self._packets += 1
        received = Message(Topic(message.topic), bytes(message.payload), message.qos, bool(message.retain), message.mid, bool(message.dup))
        if self.manual_ack and received.qos > 0:
            self._unacked.append(received)
            self._awaiting[received.mid] = received
        self._inbox.append(received)

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason: object, props: object) -> None:
        self._packets += 1
        done = self._publishing.pop(mid, None)
        if done is not None and not done.done():
            done.set_result(None)

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int, codes: list[Any], props: object) -> None:
        self._packets += 1
        done = self._subscribing.pop(mid, None)
        if done is not None and not done.done():
            done.set_result(codes)

    def _usable(self) -> None:
        if self.lost is not None:
            raise self.lost


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


Session = Callable[[Client], Awaitable[None]]


class _TakeoverWatch:
    """Tells a connection the broker keeps closing right after accepting it: another connection uses our client id
    (MQTT 3.1.1 brokers close the older one without saying why). Reported once per TAKEOVER_REPORT_EVERY_S."""

    def __init__(self, broker: BrokerUrl, identifier: str) -> None:
        self.broker, self.identifier = broker, identifier
        self.quick_losses = 0
        self.since_report = 0
        self.reported_at = float("-inf")

    def ended(self, client: Client) -> None:
        lived = client.dropped_at - client.connected_at if client.dropped_at is not None and client.connected_at is not None else None
        if lived is None or lived > TAKEOVER_WITHIN_S:
            self.quick_losses = 0
            return
        self.quick_losses += 1
        if self.quick_losses < TAKEOVER_REPEATS:
            return
        self.since_report += 1
        now = time.monotonic()
        if now - self.reported_at >= TAKEOVER_REPORT_EVERY_S:
            log.error(
                "event=mqtt_client_id_taken broker=%s client=%s losses=%d action=%r", self.broker, self.identifier, self.since_report,
                f"another connection uses client id {self.identifier!r} (a second process for the same site, or a test "
                "instance on this broker): the broker closes whichever connected first; stop the other one",
            )
            self.reported_at, self.since_report = now, 0


async def stay_connected(
    broker: BrokerUrl,
    session: Session,
    *,
    identifier: str,
    clean_session: bool = True,
    manual_ack: bool = False,
    will: Will | None = None,
    keepalive: int = 15,
    min_backoff_s: float = 0.1,
    max_backoff_s: float = 5.0,
) -> None:
    """Run `session(client)` on a connection to `broker`, reconnecting whenever it drops, until `session` returns."""
    delay = min_backoff_s
    takeover = _TakeoverWatch(broker, identifier)
    while True:
        client = Client(broker, identifier=identifier, clean_session=clean_session, manual_ack=manual_ack, will=will, keepalive=keepalive)
        try:
            async with client:
                log.info("event=mqtt_connected broker=%s client=%s", broker, identifier)
                delay = min_backoff_s
                await session(client)
                return
        except MqttError as exc:
            takeover.ended(client)
            log.warning("event=mqtt_disconnected broker=%s client=%s error=%r retry_in_s=%.1f", broker, identifier, str(exc), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_backoff_s)
