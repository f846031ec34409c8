"""The district intake as one of many hub workers, on a NATS JetStream cluster whose MQTT listener the edges speak to.

The cluster's MQTT listener stores every QoS 1 message an edge publishes in its replicated `$MQTT_msgs` stream (subject
`$MQTT.msgs.` + the topic with `/` as `.`) before it acknowledges it to the edge. The workers read that stream through
durable pull consumers they all share, one per kind of message (escalations, status, guards: a flood of one kind never
holds up another): whichever worker asks next gets the next messages, so a worker added later takes work at once and a
worker that dies leaves its unacknowledged messages to the others after `ack_wait`. A message is acknowledged only after
the writer committed it; the store locks per escalation and per site (hub/store.py `lock_keys`), so workers sharing one
PostgreSQL keep a late revision from overwriting a newer one. Receipts and police commands go back into the same stream on
the edges' topics with the MQTT QoS 1 header, so the cluster delivers them at QoS 1, also to a session that is away.

Liveness: each worker sees only its share of the heartbeats, so it judges silence from the database, which has them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import nats
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError
from sqlalchemy import Engine

from gateway.connection import MqttError, Topic
from gateway.police import SiteMonitor
from guardlink import topics
from guardlink.districtconfig import DistrictConfig
from guardlink.siteconfig import BrokerUrl
from hub.intake import Intake
from hub.store import Stored

if TYPE_CHECKING:
    from hub.writer import Writer

log = logging.getLogger(__name__)

STREAM = "$MQTT_msgs"  # the MQTT listener's stream of QoS 1 messages (nats-server's mqtt.go creates it the same way)
STORED = "$MQTT.msgs."
QOS1_HEADER = {"Nmqtt-Pub": "1"}  # what the MQTT listener puts on a QoS 1 message; deliveries through a route need it
KINDS = {"escalations": topics.police_escalations, "status": topics.police_site_status, "guards": topics.police_guards}


class WorkerRefused(Exception):
    """This hub worker may not join the others (SQLite takes one worker): the message says what to run instead."""


def parse_servers(url: str) -> list[str]:
    """`nats://host:port[,host:port...]` -> one URL per server; ValueError saying how to write it."""
    if not url.startswith("nats://") or not url[len("nats://"):].strip(","):
        raise ValueError(f"NATS URL {url!r}: write nats://host:port[,host:port...]")
    servers = []
    for address in url[len("nats://"):].split(","):
        host, _, port = address.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"NATS URL {url!r}: {address!r} is not host:port")
        servers.append(f"nats://{host}:{port}")
    return servers


def subject_of(topic: str) -> str:
    """The NATS subject of an MQTT topic, as the MQTT listener converts it (guardlink's topics have no empty levels)."""
    return ".".join(level.replace(".", "//") for level in topic.split("/"))


def topic_of(subject: str) -> str:
    """The MQTT topic of a NATS subject (the inverse of `subject_of`)."""
    return subject.replace("//", "\0").replace(".", "/").replace("\0", ".")


def consumer_name(district: str, kind: str) -> str:
    """The durable consumer every worker of a district shares for one kind of message."""
    return f"guardlink-hub-{district}-{kind}"


@dataclass(slots=True, eq=False)
class Delivery:
    """A message from the stream, shaped as the intake reads MQTT messages (topic, payload), with what acknowledges it."""

    topic: Topic
    payload: bytes
    msg: Msg


class JetStreamLink:
    """The intake's way back to the edges: publish on an MQTT topic at QoS 1 (stored, replicated), acknowledge deliveries."""

    def __init__(self, connection: Nats, stream: JetStreamContext) -> None:
        self.connection = connection
        self.stream = stream
        self._acks: list[Msg] = []

    async def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        """Store a message for the edges subscribed to `topic` (MqttError when the cluster does not take it)."""
        data = payload.encode() if isinstance(payload, str) else payload
        try:
            await self.stream.publish(STORED + subject_of(topic), data, headers=QOS1_HEADER)
        except (TimeoutError, NatsError) as exc:
            raise MqttError(f"the NATS cluster did not store the message on {topic!r}: {exc!r}") from exc

    def ack(self, delivery: Delivery) -> None:
        """Acknowledge after the commit; the acknowledgements of a turn of the event loop leave together."""
        if not self._acks:
            asyncio.get_running_loop().call_soon(self._send_acks)
        self._acks.append(delivery.msg)

    def _send_acks(self) -> None:
        acks, self._acks = self._acks, []
        if not self.connection.is_closed:  # else not acknowledged: the cluster gives them to a worker again after ack_wait
            asyncio.ensure_future(self._publish_acks(acks))

    async def _publish_acks(self, acks: list[Msg]) -> None:
        for msg in acks:
            await self.connection.publish(msg.reply, b"+ACK")


class NatsIntake(Intake):
    """One hub worker: takes its share of the district's messages from the cluster into the shared database; `run()` forever."""

    def __init__(
        self,
        config: DistrictConfig,
        engine: Engine,
        *,
        servers: list[str],
        ack_wait_s: float = 5.0,
        fetch_batch: int = 500,
        in_flight: int = 4,
        max_ack_pending: int = 20_000,
        check_every_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        notify: asyncio.Event | None = None,
        on_commit: Callable[[Stored], None] | None = None,
    ) -> None:
        """`ack_wait_s`: how long the cluster waits for a worker's acknowledgement before it gives the messages to another
        worker (a dead worker's messages move after this; a live one says "in progress" every third of it while its
        database is slow); `fetch_batch` and `in_flight`: each kind's pull size and the batches a worker holds at once."""
        super().__init__(config, engine, broker=BrokerUrl(host=servers[0].split("://")[1].rpartition(":")[0]), clock=clock,
                         check_every_s=check_every_s, notify=notify, on_commit=on_commit)
        self.servers = servers
        self.broker = ",".join(servers)  # type: ignore[assignment]  # shown in logs
        self.ack_wait_s = ack_wait_s
        self.fetch_batch = fetch_batch
        self.in_flight = in_flight
        self.max_ack_pending = max_ack_pending
        self.fetched = 0
        self._holding: set[tuple[Delivery, ...]] = set()  # batches fetched, not yet committed
        self._escalations_writer: Writer | None = None
        self.client: JetStreamLink | None = None  # type: ignore[assignment]

    async def run(self) -> None:
        """Take messages until cancelled; WorkerRefused when this worker may not join the others."""
        from hub.writer import Writer

        connection = await nats.connect(
            self.servers, name=f"guardlink-hub-{self.district}", max_reconnect_attempts=-1, reconnect_time_wait=0.2, connect_timeout=2,
            error_cb=self._connection_error, disconnected_cb=self._disconnected, reconnected_cb=self._reconnected,
        )
        try:
            await self._join(connection)
            stream = connection.jetstream(timeout=5)
            subscriptions = {kind: await self._consumer(stream, kind) for kind in KINDS}
            await asyncio.to_thread(self._prime_monitor)
            loop = asyncio.get_running_loop()
            # Escalations commit on their own writer (thread, connection): a panic never waits behind a batch of heartbeats.
            self._writer, self._escalations_writer = (Writer(self.engine, loop, max_items=self.config.settings.commit_batch, clock=self.clock) for _ in range(2))
            self._writer.start()
            self._escalations_writer.start()
            self.client = JetStreamLink(connection, stream)
            self.ready.set()
            log.info("event=intake_subscribed district=%s broker=nats consumers=%s", self.district, ",".join(consumer_name(self.district, k) for k in KINDS))
            try:
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self._check_heartbeats())
                    tasks.create_task(self._keep_holding())
                    for kind, subscription in subscriptions.items():
                        tasks.create_task(self._pull(kind, subscription))
            finally:
                self.client = None
                await asyncio.gather(asyncio.to_thread(self._writer.stop), asyncio.to_thread(self._escalations_writer.stop))
        finally:
            await connection.close()

    def writers(self) -> list[Writer]:
        return [w for w in (self._writer, self._escalations_writer) if w is not None]

    def pulls(self) -> tuple[int, int] | None:
        return self.fetched, len(self._holding)

    async def _join(self, connection: Nats) -> None:
        """Answer the workers that start after this one, and ask those already running: SQLite takes one worker only."""
        mine = self.engine.dialect.name
        subject = f"guardlink-hub.{self.district}.workers"

        async def answer(msg: Msg) -> None:
            await msg.respond(mine.encode())

        try:
            theirs = (await connection.request(subject, mine.encode(), timeout=2)).data.decode()
        except (NoRespondersError, NatsTimeout):
            theirs = None
        if theirs is not None and "sqlite" in (mine, theirs):
            where = "this worker's database" if mine == "sqlite" else "a running worker's database"
            raise WorkerRefused(
                f"district {self.district!r}: another hub worker already runs on this NATS cluster and {where} is SQLite, which takes one worker; "
                "run every worker on the same PostgreSQL (--database postgresql://user@host:port/db)"
            )
        await connection.subscribe(subject, cb=answer)

    async def _consumer(self, stream: JetStreamContext, kind: str) -> JetStreamContext.PullSubscription:
        """The kind's shared durable consumer (created by the first worker), retried while the cluster elects its leaders."""
        filter_subject = STORED + subject_of(KINDS[kind](self.district, "*"))
        config = ConsumerConfig(
            durable_name=consumer_name(self.district, kind), filter_subject=filter_subject, ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_s,
            max_deliver=-1,  # an escalation is never given up: bad documents are acknowledged as rejections, never crash a worker
            max_ack_pending=self.max_ack_pending,  # flow control: what all workers hold unacknowledged at once
            max_waiting=512,  # pull requests waiting: one per kind per worker, many times over
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                await self._ensure_stream(stream)
                return await stream.pull_subscribe(filter_subject, durable=config.durable_name, stream=STREAM, config=config)
            except (TimeoutError, NatsError) as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("event=consumer_retry kind=%s error=%r", kind, str(exc)[:200])
                await asyncio.sleep(0.5)

    @staticmethod
    async def _ensure_stream(stream: JetStreamContext) -> None:
        """The MQTT listener creates its stream when the first MQTT client connects: a worker that comes first creates it alike."""
        try:
            await stream.stream_info(STREAM)
        except NotFoundError:
            await stream.add_stream(StreamConfig(name=STREAM, subjects=[STORED + ">"], retention=RetentionPolicy.INTEREST, storage=StorageType.FILE, num_replicas=3))

    async def _pull(self, kind: str, subscription: JetStreamContext.PullSubscription) -> None:
        """Fetch, parse and hand to the writer; at most `in_flight` batches of this kind uncommitted at once."""
        slots = asyncio.Semaphore(self.in_flight)
        while True:
            await slots.acquire()
            try:
                msgs = await subscription.fetch(self.fetch_batch, timeout=1.0)
            except (TimeoutError, NatsTimeout):
                slots.release()
                continue
            except NatsError as exc:  # a leader moving, a reconnect: ask again
                slots.release()
                log.warning("event=fetch_retry kind=%s error=%r", kind, str(exc)[:200])
                await asyncio.sleep(0.2)
                continue
            self.fetched += len(msgs)
            batch = [Delivery(Topic(topic_of(msg.subject[len(STORED):])), msg.data, msg) for msg in msgs]
            items = [self._contained(delivery) for delivery in batch]  # type: ignore[arg-type]
            held = tuple(batch)
            self._holding.add(held)
            writer = self._escalations_writer if kind == "escalations" else self._writer
            if writer is None:
                raise RuntimeError("the worker's writers are not running: run() starts them before pulling")
            writer.submit([i for i in items if i is not None], partial(self._done, slots, batch, held))

    def _done(self, slots: asyncio.Semaphore, batch: list[Delivery], held: tuple[Delivery, ...], stored: Stored) -> None:
        slots.release()
        self._holding.discard(held)
        if self.stored == 0 and stored.new:
            log.info("event=worker_took_work district=%s stored=%d", self.district, stored.new)
        if self.client is not None:  # else stopping: the cluster gives the batch to another worker, which finds it stored
            self._committed(self.client, batch, stored)  # type: ignore[arg-type]

    async def _keep_holding(self) -> None:
        """Tell the cluster that batches waiting for the database are in progress, so it does not give them to another worker."""
        while True:
            await asyncio.sleep(self.ack_wait_s / 3)
            for held in list(self._holding):
                for delivery in held:
                    with contextlib.suppress(NatsError):
                        await delivery.msg.in_progress()

    async def _refresh_liveness(self) -> None:
        """Start each check from the database: the other workers' heartbeats are there, not in this worker's memory."""
        self.monitor = SiteMonitor(missed=self.config.settings.heartbeat_misses)
        await asyncio.to_thread(self._prime_monitor)

    @staticmethod
    async def _connection_error(exc: Exception) -> None:
        log.warning("event=nats_error error=%r", str(exc)[:200])

    @staticmethod
    async def _disconnected() -> None:
        log.warning("event=nats_disconnected")

    async def _reconnected(self) -> None:
        url = self.client.connection.connected_url if self.client else None
        log.info("event=nats_reconnected server=%s", url.netloc if url else "?")


def is_nats(url: Any) -> bool:
    """Whether a `--broker` value names a NATS cluster."""
    return isinstance(url, str) and url.startswith("nats://")
