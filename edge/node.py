"""The edge node runtime: one asyncio loop that reads the site broker, dispatches guards and informs the police.

What each input means is decided by the router (edge/routing.py) as a plan; this module carries plans out: it
stores, acknowledges, publishes and keeps one bad message from taking the rest down.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import traceback
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from edge import evidence_store
from edge.callups import CallUpRelay
from edge.dispatch import Step, command_answer
from edge.evidence_plan import alarm_cameras
from edge.guard_app import GuardAppServer
from edge.guard_app_queue import field_queue_path
from edge.homeassistant import discovery, guard_state, incidents_state
from edge.monitor import SiteMonitor
from edge.roster import RosterSync, roster_path
from edge.routing import DEVICE_SOURCE, Inbound, Plan, Router, device_confirmation
from edge.vision.events import CameraEvent
from edge.vision.process import CameraProcess
from gateway.connection import Client, Message, MqttError, Will, stay_connected
from gateway.dc09_transmitter import AlarmCentres
from gateway.evidence_upload import evidence_uploader
from gateway.farewell import say_offline
from gateway.outbox import Outbox
from gateway.uplink import PoliceUplink
from guardlink import topics
from guardlink.geo import LatLon
from guardlink.models import Escalation, Evidence, GuardReport, GuardsReport, GuardState, Location, iso
from guardlink.siteconfig import BrokerUrl, SiteConfig

log = logging.getLogger(__name__)


RESUME_WITHIN_S = 24 * 3600  # escalations older than this are not picked up again after a restart
RETAIN_DELIVERED_S = 7 * 24 * 3600  # delivered revisions stay in the outbox this long, for the record
REPLAY_STATE = "replay_guard"  # the replay guard's record, saved in the outbox database
SAVE_REPLAYS_EVERY_S = 5.0
GUARDS_REPORT_EVERY_S = 2.0  # guards' positions and states to the command centre at most this often


def _status(state: str) -> bytes:
    return json.dumps({"state": state}).encode()


class EdgeNode:
    """Runs one site: intake -> rules -> dispatch (offer, answer, re-offer) -> outbox (durable) -> police.

    The site broker session is persistent (fixed client id, clean session off, QoS 1) and every message
    is acknowledged only after what it caused is stored, so a press is never lost to an edge restart:
    the broker keeps it until then and redelivers it, and a copy of a press already stored is
    recognised and not escalated twice.
    """

    def __init__(
        self,
        config: SiteConfig,
        *,
        site_broker: BrokerUrl,
        police_broker: BrokerUrl,
        outbox_path: Path,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] | None = None,
        status_every_s: float = 10.0,
        evidence_dir: Path | None = None,
    ) -> None:
        """`evidence_dir` holds camera snapshots and clips (default: `evidence` next to the outbox). `clock` is the wall
        clock (times in documents); `monotonic` tells a step of it (NTP) from time passing: time.monotonic with the
        real clock, none (no step detection) with an injected one unless given."""
        self.config = config
        self.site_broker = site_broker
        self.clock = clock
        self.monotonic = monotonic or (time.monotonic if clock is time.time else None)
        police = config.police
        self.outbox = Outbox(outbox_path, clock=clock, receipt_timeout_s=police.receipt_timeout_s if police.receipts else None)
        self.router = Router(config, clock(), holds=self.outbox.holds, next_sequence=self.outbox.next_sequence)
        # The router's parts, read by the monitor and the tests.
        self.intake, self.board, self.dispatcher = self.router.intake, self.router.board, self.router.dispatcher
        self.supervisor, self.wearables, self.device_states = self.router.supervisor, self.router.wearables, self.router.device_states
        self.roster = RosterSync(config, self.board, roster_path(outbox_path), clock)  # the district register's guards (edge/roster.py)
        self.callups = CallUpRelay(config, self.board, site_broker=site_broker, police_broker=police_broker, clock=clock)  # large events (edge/callups.py)
        self.uplink = PoliceUplink(
            police_broker, config.site.district, config.site.id, self.outbox,
            status=self.status, on_command=self._police_command, status_every_s=status_every_s,
            on_roster=self.roster.handle if self.roster.enabled else None,
        )
        self.ready = asyncio.Event()  # set once subscribed on the site broker
        self.incidents = 0
        self.set_aside: Counter[str] = Counter()  # messages that failed in processing, by origin (site, police, camera, timer)
        self._set_aside_logged: dict[tuple[str, str], float] = {}
        self._reported_guards: dict[str, tuple[GuardState, str | None, LatLon | None]] = {}
        self._guards_reported_at = float("-inf")
        self.site_connected = False
        self._site_client: Client | None = None
        self._status_topic = topics.edge_status(config.site.id)
        self._tasks: set[asyncio.Task[None]] = set()
        self._shown_guards: dict[str, tuple[GuardState, str | None]] = {}  # as last published for Home Assistant
        self.evidence_dir = evidence_dir or outbox_path.parent / "evidence"
        self.evidence_swept = evidence_store.Swept(0, 0, 0, False)  # files and bytes removed so far; the directory's size at the last sweep
        self.cameras = {
            camera.id: CameraProcess(
                camera, on_event=self._camera_event, on_evidence=self._camera_evidence, broker=site_broker, evidence_dir=self.evidence_dir,
            )
            for camera in config.cameras
        }
        self.alarm_centres = AlarmCentres.for_site(config, self.outbox, clock=clock)  # SIA DC-09 receivers, each with its cursor in the outbox
        self.uploads = evidence_uploader(config.upload, outbox_path)  # evidence files to the hub, when the site file says where
        self.guard_app = (  # the guards' phone app, served on the site network (edge/guard_app.py)
            GuardAppServer(config, site_broker=site_broker, police_broker=police_broker, clock=clock, queue_path=field_queue_path(outbox_path))
            if config.guard_app else None
        )
        self.monitor = SiteMonitor(self)  # /metrics and telemetry; last, as it reads the parts above
        self.outbox.on_stored, self.outbox.on_delivered = self.monitor.stored, self.monitor.delivered
        for process in self.cameras.values():
            process.on_stats = self.monitor.camera_report

    @property
    def redeliveries_skipped(self) -> int:
        """Copies of stored alarms (broker redeliveries, device resends, replays) not escalated again."""
        return self.router.copies_skipped

    def status(self) -> dict[str, object]:
        """Health and backlog, as reported to the police in the site's status heartbeat."""
        return {
            "site": self.config.site.id,
            "backlog": self.outbox.backlog,
            "unreceipted": self.outbox.unreceipted,
            "oldest_unreceipted_s": round(self.outbox.oldest_unreceipted_s(), 1),
            "incidents": self.incidents,
            "open_escalations": len(self.dispatcher.jobs),
            "open": self.dispatcher.latest_open(),  # so a police terminal started now shows what is open
            "rejected_payloads": self.intake.rejections.total,
            "set_aside": sum(self.set_aside.values()),
            "health": {"outbox": self.outbox.health, "site_broker": "connected" if self.site_connected else "disconnected"},
            **({"roster": self.roster.status()} if self.roster.enabled else {}),
            **({"alarm_centres": self.alarm_centres.status()} if self.alarm_centres.links else {}),
            **({"cameras": {camera: process.stats for camera, process in self.cameras.items()}} if self.cameras else {}),
        }

    async def run(self) -> None:
        """Run until cancelled."""
        site = self.config.site
        log.info(
            "event=edge_starting site=%s devices=%d guards=%d site_broker=%s police_broker=%s outbox=%s",
            site.id, len(self.config.devices), len(self.config.guards), self.site_broker, self.uplink.broker, self.outbox.path,
        )
        await self.outbox.open()
        await self.alarm_centres.open()  # before anything new is stored: a new centre starts after what is there now
        self.roster.load()  # the last good roster, before open escalations are taken up again
        await self._resume()
        will = Will(self._status_topic, _status("offline"), qos=1, retain=True)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.uplink.run())
                tasks.create_task(self.callups.run())
                tasks.create_task(self.monitor.run())
                if self.uploads is not None:
                    tasks.create_task(self.uploads.run())
                tasks.create_task(self.alarm_centres.run())
                if self.guard_app is not None:
                    tasks.create_task(self.guard_app.run())
                tasks.create_task(self._tick())
                if self.cameras:
                    tasks.create_task(self._keep_evidence())
                for camera in self.cameras.values():
                    tasks.create_task(camera.run())
                tasks.create_task(
                    stay_connected(
                        self.site_broker, self._site_session, identifier=f"guardlink-edge-{site.id}",
                        clean_session=False, manual_ack=True, will=will,
                    )
                )
        finally:
            await self._save_replays()
            await self.outbox.close()

    async def _save_replays(self) -> None:
        await self.outbox.save_state(REPLAY_STATE, json.dumps(self.intake.replays.snapshot()))

    async def _resume(self) -> None:
        """Pick up what was open when the edge stopped: offers run again, conditions wait to clear."""
        now = self.clock()
        pruned = await self.outbox.prune(now - RETAIN_DELIVERED_S)
        saved = await self.outbox.load_state(REPLAY_STATE)
        if saved:
            self.intake.replays.restore(json.loads(saved))
        resumed = self.router.resume(await self.outbox.latest_revisions(now - RESUME_WITHIN_S), now)
        log.info("event=edge_resumed open_escalations=%d pruned_delivered=%d", resumed, pruned)

    # -- the site broker -------------------------------------------------------------------------

    async def _site_session(self, client: Client) -> None:
        for topic_filter in self.router.filters:
            await client.subscribe(topic_filter, qos=1)
        await client.publish(self._status_topic, _status("online"), qos=1, retain=True)
        self._site_client = client
        self.site_connected = True
        self.ready.set()
        log.info("event=edge_ready site=%s subscriptions=%s", self.config.site.id, ",".join(self.intake.filters))
        if self.config.home_assistant is not None:
            for topic, payload in discovery(self.config, self.config.home_assistant.prefix):
                self._spawn(self._publish_site(topic, payload, retain=True))
            self._shown_guards.clear()
            self._home_assistant()
        try:
            async for batch in client.batches():
                # Each message is routed here, in arrival order, so sequence numbers follow arrival; what must be
                # stored first continues in a task of its own, so the outbox commits whatever arrives together in
                # one fsync. Everything else (positions, statuses, floods) is acknowledged at once.
                for message in batch:
                    work = self._process(client, message)
                    if work is not None:
                        self._spawn(work)
        except asyncio.CancelledError:
            await say_offline(client, self._status_topic, _status("offline"))  # a clean stop discards the Last Will
            raise
        finally:
            self.site_connected = False
            self._site_client = None

    def _process(self, client: Client, message: Message) -> Coroutine[Any, Any, None] | None:
        """Route one site message and start carrying out its plan; returns what must still be stored before it is
        acknowledged, if anything.

        Whatever goes wrong is contained to this one message: it is set aside (counted, logged with its topic
        and digest, kept in the outbox's `set_aside` table) and acknowledged, so that the broker does not hand
        it back forever and the edge goes on serving every other device."""
        payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
        topic = message.topic.value
        ack = _once(lambda: client.ack(message))
        plan: Plan | None = None
        try:
            plan = self.router.route(Inbound(topic, payload, message.retain, bool(getattr(message, "dup", False)), message.mid), self.clock())
            for event in plan.events:
                self.monitor.event(event)
            if plan.source is not None:
                self.outbox.claim(plan.source)  # now: a copy may be routed before this one is stored
            work = self._effects(plan, ack)
        except Exception as exc:
            if plan is not None and plan.source is not None:
                self.outbox.unclaim(plan.source)
            return self._set_aside("site", topic, payload, exc, ack)
        return None if work is None else self._contained(work, "site", topic, payload, ack, source=plan.source)

    def _effects(self, plan: Plan, ack: Callable[[], None] | None = None) -> Coroutine[Any, Any, None] | None:
        """Start what a plan asks: site publications at once, the revisions stored before `ack` (returned to await)."""
        for topic, payload, retain in plan.publish:
            self._spawn(self._publish_site(topic, payload, retain=retain))
        if plan.confirm is not None:
            self._spawn(self._confirm_to_device(plan.confirm, stored_first=True))  # its first confirmation may have been lost
        for request in plan.evidence:
            self.cameras[request.camera].request_evidence(request.escalation, request.at, request.box)
        if not plan.stores:
            if ack is not None:
                ack()
            return None
        return self._carry_out(plan.steps, ack=ack, source=plan.source)

    async def _confirm_to_device(self, source: str, *, stored_first: bool = False) -> None:
        """Tell native firmware its alarm is stored, so it stops resending it."""
        if stored_first:
            await self.outbox.flush()  # a copy's original may still be on its way to the disk
        device, confirmation = device_confirmation(source)
        await self._publish_site(topics.native_device_ack(self.config.site.id, device), confirmation)

    async def _contained(
        self, work: Coroutine[Any, Any, None], origin: str, topic: str, payload: bytes, ack: Callable[[], None] | None, source: str | None = None
    ) -> None:
        """Run what a message still has to do; a failure sets the message aside instead of ending the edge."""
        try:
            await work
        except Exception as exc:
            if source is not None:
                self.outbox.unclaim(source)  # a copy of the message may still raise the alarm: a duplicate beats a loss
            await self._set_aside(origin, topic, payload, exc, ack)

    async def _set_aside(self, origin: str, topic: str, payload: bytes, exc: BaseException, ack: Callable[[], None] | None = None) -> None:
        """Count, log and keep a message that could not be processed, then acknowledge it."""
        self.set_aside[origin] += 1
        now = self.clock()
        kind = type(exc).__name__
        digest = hashlib.sha256(payload).hexdigest()[:16]
        if now - self._set_aside_logged.get((origin, kind), float("-inf")) >= 10.0:
            self._set_aside_logged[(origin, kind)] = now
            log.error(
                "event=message_set_aside origin=%s topic=%s bytes=%d sha256=%s error=%r", origin, topic, len(payload), digest, f"{kind}: {exc}",
                exc_info=exc,
            )
        try:
            await self.outbox.set_aside(origin, topic, payload, "".join(traceback.format_exception(exc))[-2000:])
        finally:
            if ack is not None:
                ack()

    # -- timers, the police, the cameras -----------------------------------------------------------

    async def _tick(self) -> None:
        saved_at = self.clock()
        steps = ClockSteps(self.clock, self.monotonic) if self.monotonic else None
        while True:
            await asyncio.sleep(self.config.supervision.check_every_s)
            try:
                if steps is not None and (step := steps.check()):
                    log.warning("event=clock_stepped seconds=%.3f action=%r", step, "deadlines and ages moved with it")
                    self.router.shift(step)
                plan = self.router.tick(self.clock())
                self._home_assistant()  # shifts start and end
                work = self._effects(plan)
                if work is not None:
                    await work
                self._report_guards()
                if self.clock() - saved_at >= SAVE_REPLAYS_EVERY_S:
                    saved_at = self.clock()
                    await self._save_replays()
            except Exception:
                self.set_aside["timer"] += 1
                log.exception("event=timer_check_failed")

    async def _keep_evidence(self) -> None:
        """The evidence directory under the site file's `evidence_keep_mb` (edge/evidence_store.py), checked every minute."""
        keep_bytes = self.config.evidence_keep_mb * 1024 * 1024
        while True:
            await asyncio.sleep(evidence_store.SWEEP_EVERY_S)
            try:  # whatever goes wrong here is logged: the edge goes on
                waiting = self.uploads.waiting_paths() if self.uploads is not None else set()
                if waiting is None or not self.evidence_dir.is_dir():
                    continue
                swept = await asyncio.to_thread(evidence_store.sweep, self.evidence_dir, keep_bytes, held=waiting.__contains__, now=self.clock())
                evidence_store.report(swept, keep_bytes)
                self.evidence_swept = evidence_store.Swept(
                    self.evidence_swept.removed + swept.removed, self.evidence_swept.removed_bytes + swept.removed_bytes, swept.kept_bytes, swept.over_limit,
                )
            except Exception:
                log.exception("event=evidence_sweep_failed")

    def _report_guards(self) -> None:
        """The site's guards to the command centre when a state, job or position changed (at most every few seconds)."""
        now = self.clock()
        shown = {g: (s.state, s.job, s.placed.point if s.placed else None) for g, s in self.board.guards.items()}
        if shown == self._reported_guards or now - self._guards_reported_at < GUARDS_REPORT_EVERY_S:
            return
        self._reported_guards, self._guards_reported_at = shown, now
        report = GuardsReport(
            site=self.config.site.id,
            at=iso(now),
            guards=[
                GuardReport(
                    id=g, name=s.guard.name, roles=list(s.guard.roles), state=s.state, job=s.job,
                    location=Location.of(s.placed.point) if s.placed else None,
                    accuracy_m=s.placed.accuracy_m if s.placed else None,
                    position_at=iso(s.placed.seen_at) if s.placed else None,
                )
                for g, s in self.board.guards.items()
            ],
        )
        self.uplink.report_guards(report.model_dump_json(by_alias=True).encode())

    def _police_command(self, payload: bytes) -> None:
        """A command from the police: its answer goes back at once, its revision is stored like any other."""
        try:
            decided = self.router.command(payload, self.clock())
            if decided is None:
                return
            command, outcome = decided
            self.uplink.answer(command_answer(command, outcome))
            if isinstance(outcome, Step):
                self._spawn(self._contained(self._carry_out([outcome]), "police", self.uplink.commands_topic, payload, None))
        except Exception as exc:
            self._spawn(self._set_aside("police", self.uplink.commands_topic, payload, exc))

    def _camera_event(self, event: CameraEvent) -> None:
        payload = json.dumps(event.to_dict()).encode()
        topic = topics.camera_events(self.config.site.id, event.camera)
        try:
            work = self._effects(self.router.camera_event(event, self.clock()))
        except Exception as exc:
            self._spawn(self._set_aside("camera", topic, payload, exc))
            return
        if work is not None:
            self._spawn(self._contained(work, "camera", topic, payload, None))

    def _camera_evidence(self, escalation_id: str, evidence: Evidence) -> None:
        """A snapshot or clip is written: the escalation's next revision lists it, and it goes to the hub."""
        payload = evidence.model_dump_json().encode()
        try:
            work = self._effects(self.router.attach(escalation_id, evidence, self.clock()))
        except Exception as exc:
            self._spawn(self._set_aside("camera", evidence.path, payload, exc))
            return
        if work is not None:
            self._spawn(self._contained(work, "camera", evidence.path, payload, None))
            if self.uploads is not None:
                self.uploads.submit(escalation_id, evidence)

    # -- effects ---------------------------------------------------------------------------------

    async def _carry_out(self, steps: list[Step], ack: Callable[[], None] | None = None, source: str | None = None) -> None:
        """Store each revision (durably, in order), then acknowledge the source message, then tell the guards."""
        await asyncio.gather(*(self.outbox.append(step.escalation, source) for step in steps))
        if ack:
            ack()  # only now may the broker forget the message
        if source is not None and source.startswith(DEVICE_SOURCE):
            self._spawn(self._confirm_to_device(source))  # the guards' offers need not wait for it
        for step in steps:
            escalation = step.escalation
            if escalation.revision == 1:
                self.incidents += 1
            for camera in alarm_cameras(escalation, self.config.cameras):  # the video of before the alarm, from each camera on its zone
                self.cameras[camera].request_evidence(escalation.id, escalation.incident.detected_at.timestamp(), None)
            log.info(
                "event=escalation id=%s revision=%d kind=%s device=%s status=%s guards=%s",
                escalation.id, escalation.revision, escalation.incident.kind.value, escalation.incident.device, escalation.status.value,
                ",".join(f"{a.guard}:{a.state.value}" for a in escalation.assignments) or "-",
            )
            for guard, offer in step.offers:
                await self._publish_site(topics.guard_offer(self.config.site.id, guard), offer.model_dump_json().encode())
        self._home_assistant(steps[-1].escalation if steps else None)

    def _home_assistant(self, latest: Escalation | None = None) -> None:
        """Guard states that changed, and the latest incident, retained for Home Assistant (when the site turns it on)."""
        if self.config.home_assistant is None:
            return
        site = self.config.site.id
        for guard, status in self.board.guards.items():
            if self._shown_guards.get(guard) != (status.state, status.job):
                self._shown_guards[guard] = (status.state, status.job)
                self._spawn(self._publish_site(topics.guard_state(site, guard), guard_state(status.state, status.job), retain=True))
        if latest is not None:
            self._spawn(self._publish_site(topics.incidents_state(site), incidents_state(latest, len(self.dispatcher.jobs)), retain=True))

    async def _publish_site(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        client = self._site_client
        if client is None:
            log.warning("event=site_publish_skipped topic=%s reason=site_broker_disconnected", topic)
            return
        try:
            await client.publish(topic, payload, qos=1, retain=retain)
        except MqttError as exc:
            log.warning("event=site_publish_failed topic=%s error=%r", topic, str(exc))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("event=task_failed task=%s", task.get_coro(), exc_info=task.exception())


class ClockSteps:
    """Tells when the wall clock jumped (an NTP step, an operator setting the time) rather than ran."""

    def __init__(self, wall: Callable[[], float], monotonic: Callable[[], float], tolerance_s: float = 1.0) -> None:
        self.wall, self.monotonic, self.tolerance_s = wall, monotonic, tolerance_s
        self._offset = wall() - monotonic()

    def check(self) -> float:
        """How far the wall clock stepped since the last check (0.0 when it only ran)."""
        offset = self.wall() - self.monotonic()
        step, self._offset = offset - self._offset, offset
        return step if abs(step) > self.tolerance_s else 0.0


def _once(action: Callable[[], None]) -> Callable[[], None]:
    """`action`, to be done at most once however often it is called."""
    done = False

    def once() -> None:
        nonlocal done
        if not done:
            done = True
            action()

    return once
