"""The SIA DC-09 transmitter: alarms and restores to alarm receiving centres, acknowledged, supervised.

What is sent comes from an `AlarmSource`: escalation revisions in a fixed order, each at a position, and a place to
keep each centre's cursor: the position of the last revision it acknowledged (or that had nothing for it) and the
DC-09 sequence number its next message carries. The edge's source is its outbox (`OutboxSource`); the hub's is its
database (hub/forwarding.py). A message is sent, waited for and sent again until the centre answers ACK, so a
transmitter that stops or is killed resends from the cursor on its next start: nothing is lost, and a message the
centre took just before the stop comes again with its sequence number unchanged, which a receiver recognises as a
repeat.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway import dc09
from gateway.dc09_codes import data, panel_event
from gateway.outbox import Outbox
from guardlink.alarmcentre import AlarmCentre, Transport
from guardlink.models import Escalation
from guardlink.siteconfig import SiteConfig

log = logging.getLogger(__name__)

BATCH = 200  # revisions read from the source at a time
RETRY_FIRST_S = 0.5
RESYNC_AFTER_S = 1.0  # a NAK whose time differs from ours by more than this resynchronises our clock
SAVE_EVERY_S = 0.25  # the cursor is saved at most this often while messages flow (and always when stopped)


@dataclass(frozen=True, slots=True)
class Cursor:
    """How far one centre got: the position of the last revision done with, and the DC-09 sequence number of its next message."""

    after: int
    sequence: int


class AlarmSource(Protocol):
    """Where a transmitter's revisions come from, in a fixed order, and where each centre's cursor is kept."""

    def watch(self) -> asyncio.Event:
        """An event set whenever something may have been stored (the link clears it before it reads)."""

    async def newest(self) -> int:
        """The position of the newest revision stored now (a centre seen for the first time starts after it)."""

    async def read_after(self, position: int, limit: int) -> list[tuple[int, Escalation | None]]:
        """Up to `limit` entries after `position`, in order; an entry without a revision only moves the cursor on."""

    async def load_cursor(self, centre: str) -> Cursor | None:
        """The centre's saved cursor, None when it has none yet."""

    async def save_cursor(self, centre: str, cursor: Cursor) -> None:
        """Remember the centre's cursor (it survives a restart)."""


class OutboxSource:
    """The edge's revisions: the outbox, by sequence; cursors beside them in its `edge_state`."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def watch(self) -> asyncio.Event:
        return self.outbox.watch()

    async def newest(self) -> int:
        return self.outbox.last_sequence

    async def read_after(self, position: int, limit: int) -> list[tuple[int, Escalation | None]]:
        return [(escalation.sequence, escalation) for escalation in await self.outbox.stored_after(position, limit)]

    async def load_cursor(self, centre: str) -> Cursor | None:
        saved = await self.outbox.load_state(f"dc09:{centre}")
        if not saved:
            return None
        state = json.loads(saved)
        return Cursor(int(state["after"]), int(state["sequence"]))

    async def save_cursor(self, centre: str, cursor: Cursor) -> None:
        await self.outbox.save_state(f"dc09:{centre}", json.dumps({"after": cursor.after, "sequence": cursor.sequence}))


class Unanswered(Exception):
    """No usable answer within the timeout."""


class Channel:
    """A connection to one receiver: TCP (one connection, reopened when it breaks) or UDP datagrams."""

    def __init__(self, centre: AlarmCentre) -> None:
        self.centre = centre
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._datagrams: asyncio.Queue[bytes] = asyncio.Queue()

    @property
    def open(self) -> bool:
        return self._writer is not None or self._transport is not None

    async def send(self, message: bytes) -> None:
        centre = self.centre
        if centre.protocol is Transport.UDP:
            if self._transport is None:
                loop = asyncio.get_running_loop()
                self._transport, _ = await loop.create_datagram_endpoint(lambda: _Datagrams(self._datagrams), remote_addr=(centre.host, centre.port))
            while not self._datagrams.empty():  # answers to earlier tries are stale now
                self._datagrams.get_nowait()
            self._transport.sendto(message)
            return
        if self._writer is None:
            self._reader, self._writer = await asyncio.wait_for(asyncio.open_connection(centre.host, centre.port), centre.connect_timeout_s)
            log.info("event=dc09_connected centre=%s", centre)
        writer = self._writer
        assert writer is not None
        writer.write(message)
        await writer.drain()

    async def receive(self, deadline: float) -> bytes:
        """The next answer; Unanswered when none comes before `deadline` (loop time), OSError when the connection ends."""
        try:
            async with asyncio.timeout_at(deadline):
                if self._transport is not None:
                    return await self._datagrams.get()
                assert self._reader is not None
                answer = await self._reader.readuntil(b"\r")
        except TimeoutError:
            raise Unanswered(f"no answer within {self.centre.ack_timeout_s:g} s") from None
        except asyncio.IncompleteReadError:
            raise ConnectionResetError("the receiver closed the connection") from None
        except asyncio.LimitOverrunError:
            raise ConnectionResetError("the receiver sent no answer but a flood of bytes") from None
        return answer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._transport is not None:
            self._transport.close()
        self._reader = self._writer = self._transport = None


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, queue: asyncio.Queue[bytes]) -> None:
        self.queue = queue

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)


@dataclass(slots=True)
class LinkStats:
    """What one centre's link did, for status and metrics."""

    sent: int = 0  # messages written to the receiver, tries again included
    acked: int = 0
    supervision_acked: int = 0
    retries: int = 0
    naks: int = 0
    resyncs: int = 0
    rejected: int = 0  # answered DUH: the centre cannot take the message; not sent again
    connected: bool = False
    last_ack_at: float | None = None
    waiting_since: float | None = None  # when the message awaiting an answer was first tried (clock time)


class CentreLink:
    """Delivers one alarm receiving centre its alarms and restores, in the source's order, and supervises the link.

    `zones` numbers devices (by id, or `<site>/<device>` at a hub) and `users` guards; what is not numbered is zone 0 and no user."""

    def __init__(
        self, centre: AlarmCentre, source: AlarmSource, *, zones: dict[str, int], users: dict[str, int],
        clock: Callable[[], float] = time.time, on_ack: Callable[[Escalation], None] | None = None,
    ) -> None:
        self.centre = centre
        self.source = source
        self.zones = zones
        self.users = users
        self.clock = clock
        self.on_ack = on_ack  # told of each acknowledged revision (benchmarks)
        self.stats = LinkStats()
        self.cursor = 0  # source position of the last revision done with
        self.sequence = 1  # DC-09 sequence number of the next message
        self.offset_s = 0.0  # receiver's clock minus ours, learnt from NAKs
        self._key: bytes | None = None
        self._routes: dict[str, dc09.Route] = {}  # by account (a hub's centre may know each site by its own)
        self._channel = Channel(centre)
        self._wake = source.watch()
        self._saved: Cursor | None = None
        self._save_wanted = asyncio.Event()

    async def open(self) -> None:
        """Read the key and the cursor; a centre never seen before starts after what is stored now (KeyUnavailable: no key)."""
        self._key = self.centre.secret_key()
        saved = await self.source.load_cursor(self.centre.id)
        if saved is not None:
            self.cursor, self.sequence = saved.after, saved.sequence
            self._saved = saved
        else:
            self.cursor = await self.source.newest()
            await self._save()
        log.info("event=dc09_open centre=%s format=%s encrypted=%s after=%d next_sequence=%04d",
                 self.centre, self.centre.format.value, self._key is not None, self.cursor, self.sequence)

    async def run(self) -> None:
        """Deliver forever; the cursor is saved as messages are acknowledged and when stopped."""
        saver = asyncio.create_task(self._keep_saving())
        try:
            while True:
                try:
                    await self._deliver_forever()
                except Exception:  # a defect here must not stop the edge; the cursor says where to go on
                    log.exception("event=dc09_link_failed centre=%s after=%d", self.centre, self.cursor)
                    self._channel.close()
                    await asyncio.sleep(self.centre.retry_max_s)
        finally:
            saver.cancel()
            self._channel.close()
            await self._save()

    async def _deliver_forever(self) -> None:
        loop = asyncio.get_running_loop()
        last_sent = loop.time()
        reading = self._read_after(self.cursor)
        try:
            while True:
                revisions = await reading
                if not revisions:
                    # Nothing after the cursor when that read began; whatever is stored since has set `_wake`.
                    supervision = self.centre.supervision_s or None
                    try:
                        async with asyncio.timeout_at(None if supervision is None else last_sent + supervision):
                            await self._wake.wait()
                    except TimeoutError:
                        await self._exchange("NULL", "", self.centre.account, None)
                        self.stats.supervision_acked += 1
                        last_sent = loop.time()
                    reading = self._read_after(self.cursor)
                    continue
                # The next batch is read (and parsed, off the loop) while this one goes out.
                reading = self._read_after(revisions[-1][0])
                for position, escalation in revisions:
                    if escalation is not None and (event := panel_event(escalation, self.centre.area, self._zone(escalation), self._user(escalation))):
                        account = self.centre.account_for(escalation.site.id)
                        await self._exchange(self.centre.format.value, data(event, account, self.centre.format), account, escalation)
                        last_sent = loop.time()
                    self.cursor = position
                    self._save_wanted.set()
        finally:
            reading.cancel()

    def _read_after(self, position: int) -> asyncio.Future[list[tuple[int, Escalation | None]]]:
        self._wake.clear()  # before the read: whatever is stored after it starts wakes the wait
        return asyncio.ensure_future(self.source.read_after(position, BATCH))

    def _zone(self, escalation: Escalation) -> int:
        device = escalation.incident.device
        return self.zones.get(device) or self.zones.get(f"{escalation.site.id}/{device}", 0)

    def _user(self, escalation: Escalation) -> int | None:
        guard = escalation.incident.raised_by_guard
        return self.users.get(guard) if guard else None

    async def _exchange(self, token: str, content: str, account: str, escalation: Escalation | None) -> None:
        """Send one message until the centre acknowledges it (or answers DUH); backs off on silence and NAKs."""
        loop = asyncio.get_running_loop()
        failures = 0
        route = self._routes.get(account) or self._routes.setdefault(account, dc09.Route(account, self.centre.line, self.centre.receiver))
        self.stats.waiting_since = self.clock()
        while True:
            message = dc09.frame(token, self.sequence, route, content, self.clock() + self.offset_s, self._key)
            try:
                await self._channel.send(message)
                self.stats.sent += 1
                self.stats.connected = True
                response = await self._answer(loop.time() + self.centre.ack_timeout_s)
            except (Unanswered, dc09.DecodeError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            except (OSError, TimeoutError) as exc:  # could not connect, or the connection broke: a new one for the next try
                self._channel.close()
                self.stats.connected = False
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if response.acknowledges(self.sequence):
                    if failures:
                        log.info("event=dc09_delivered centre=%s sequence=%04d token=%s after_retries=%d", self.centre, self.sequence, token, failures)
                    self._acknowledged(token, escalation, loop.time())
                    return
                if response.answer is dc09.Answer.DUH:
                    self.stats.rejected += 1
                    log.error("event=dc09_rejected centre=%s sequence=%04d token=%s escalation=%s action=%r", self.centre, self.sequence, token,
                              escalation.id if escalation else "-", "the centre does not understand this event: check its format and account")
                    self.sequence = dc09.next_sequence(self.sequence)
                    self.stats.waiting_since = None
                    return
                self.stats.naks += 1
                reason = f"NAK (receiver time {response.receiver_time})"
                if response.receiver_time is not None and abs(response.receiver_time - (self.clock() + self.offset_s)) > RESYNC_AFTER_S:
                    # DC-09: a NAK carries the receiver's time; take it and send again at once with a fresh timestamp.
                    self.offset_s = response.receiver_time - self.clock()
                    self.stats.resyncs += 1
                    log.warning("event=dc09_resync centre=%s offset_s=%.1f", self.centre, self.offset_s)
                    continue
            failures += 1
            self.stats.retries += 1
            wait = min(self.centre.retry_max_s, RETRY_FIRST_S * 2 ** (failures - 1))
            log.warning("event=dc09_retry centre=%s sequence=%04d token=%s reason=%r retry_in_s=%.1f", self.centre, self.sequence, token, reason, wait)
            await asyncio.sleep(wait)

    async def _answer(self, deadline: float) -> dc09.Response:
        """The answer to the message just sent: skips late ACKs of earlier tries (another sequence number)."""
        while True:
            response = dc09.parse_response(await self._channel.receive(deadline), self._key)
            if response.answer in (dc09.Answer.ACK, dc09.Answer.RSP) and response.sequence != self.sequence:
                continue
            return response

    def _acknowledged(self, token: str, escalation: Escalation | None, now: float) -> None:
        self.sequence = dc09.next_sequence(self.sequence)
        self.stats.last_ack_at = now
        self.stats.waiting_since = None
        if escalation is None:
            return
        self.stats.acked += 1
        self._save_wanted.set()
        log.debug("event=dc09_ack centre=%s token=%s escalation=%s revision=%d", self.centre, token, escalation.id, escalation.revision)
        if self.on_ack is not None:
            self.on_ack(escalation)

    async def _keep_saving(self) -> None:
        """Saves the cursor in the background, coalescing: sending never waits for the disk."""
        while True:
            await self._save_wanted.wait()
            self._save_wanted.clear()
            await self._save()
            await asyncio.sleep(SAVE_EVERY_S)  # a crash in between resends at most this much, each with its own sequence number

    async def _save(self) -> None:
        cursor = Cursor(self.cursor, self.sequence)
        if cursor != self._saved:
            self._saved = cursor
            await self.source.save_cursor(self.centre.id, cursor)

    def status(self) -> dict[str, object]:
        """What the link did, for the status heartbeat and metrics."""
        stats = self.stats
        return {
            "connected": stats.connected, "sent": stats.sent, "acked": stats.acked, "supervision_acked": stats.supervision_acked,
            "retries": stats.retries, "naks": stats.naks, "rejected": stats.rejected,
            "oldest_unacked_s": 0.0 if stats.waiting_since is None else round(max(0.0, self.clock() - stats.waiting_since), 1),
        }


class AlarmCentres:
    """Every alarm receiving centre of a site (or of a district, at the hub), each on its own link."""

    def __init__(self, links: list[CentreLink]) -> None:
        self.links = links

    @classmethod
    def for_site(cls, config: SiteConfig, outbox: Outbox, *, clock: Callable[[], float] = time.time) -> AlarmCentres:
        """The site file's centres, fed from the edge's outbox."""
        source = OutboxSource(outbox)
        return cls([
            CentreLink(centre, source, zones=zone_numbers(config, centre), users=user_numbers(config), clock=clock)
            for centre in config.alarm_centres
        ])

    async def open(self) -> None:
        """Read keys and cursors (before anything new is stored); KeyUnavailable when a key cannot be read."""
        for link in self.links:
            await link.open()

    async def run(self) -> None:
        """Run every link until cancelled."""
        if self.links:
            async with asyncio.TaskGroup() as tasks:
                for link in self.links:
                    tasks.create_task(link.run())

    def status(self) -> dict[str, dict[str, object]]:
        """Each centre's link: connected, messages sent, acknowledged, retries, NAKs, rejected, age of the oldest unacknowledged."""
        return {link.centre.id: link.status() for link in self.links}


def zone_numbers(config: SiteConfig, centre: AlarmCentre) -> dict[str, int]:
    """Zone number of each device and camera: the centre's `zones`, else its position among devices, then cameras."""
    numbers = {ident: i for i, ident in enumerate([*(d.id for d in config.devices), *(c.id for c in config.cameras)], start=1)}
    return {**numbers, **centre.zones}


def user_numbers(config: SiteConfig) -> dict[str, int]:
    """User number of each guard: its position in the site file."""
    return {guard.id: i for i, guard in enumerate(config.guards, start=1)}

