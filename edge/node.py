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

from edge.dispatch import Step, command_answer
from edge.evidence_plan import alarm_cameras
from edge.homeassistant import discovery, guard_state, incidents_state
from edge.monitor import SiteMonitor
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
    the broker keeps it until then and redelivers it, and a redelivery of a press already stored is
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
        status_every_s: float = 10.0,
        evidence_dir: Path | None = None,
    ) -> None:
        """`evidence_dir` holds camera snapshots and clips (default: `evidence` next to the outbox)."""
        self.config = config
        self.site_broker = site_broker
        self.clock = clock
        now = clock()
        self.intake = Intake(config)
        self.board = GuardBoard(config, now)
        police = config.police
        self.outbox = Outbox(outbox_path, clock=clock, receipt_timeout_s=police.receipt_timeout_s if police.receipts else None)
        self.dispatcher = Dispatcher(config, self.board, self.outbox.next_sequence)
        self.wearables = WearableWatch(config.wearables)
        self.device_states = DeviceStates([d.id for d in config.devices])
        self.uplink = PoliceUplink(
            police_broker, config.site.district, config.site.id, self.outbox,
            status=self.status, on_command=self._police_command, status_every_s=status_every_s,
        )
        sup = config.supervision
        heartbeats = {d.id: d.heartbeat_s or driver(d.driver).heartbeat_s for d in config.devices}
        self.supervisor = Supervisor(heartbeats, missed=sup.missed_heartbeats, low_battery_percent=sup.low_battery_percent, now=now)
        self.ready = asyncio.Event()  # set once subscribed on the site broker
        self.incidents = 0
        self.redeliveries_skipped = 0
        self.set_aside: Counter[str] = Counter()  # messages that failed in processing, by origin (site, police, camera)
        self._set_aside_logged: dict[tuple[str, str], float] = {}
        self._reported_guards: dict[str, object] = {}
        self._guards_reported_at = float("-inf")
        self.site_connected = False
        self._site_client: Client | None = None
        self._open_conditions: dict[tuple[str, IncidentKind], str] = {}  # (device, kind) -> escalation id
        self._status_topic = topics.edge_status(config.site.id)
        self._reply_filter = topics.guard_reply(config.site.id, "+")
        self._tasks: set[asyncio.Task[None]] = set()
        self._shown_guards: dict[str, tuple[GuardState, str | None]] = {}  # as last published for Home Assistant
        self.cameras = {
            camera.id: CameraProcess(
                camera, on_event=self._camera_event, on_evidence=self._camera_evidence, broker=site_broker,
                evidence_dir=evidence_dir or outbox_path.parent / "evidence",
            )
            for camera in config.cameras
        }
        self._camera_quiet_until: dict[tuple[str, str, str | None], float] = {}  # (camera, kind, zone or line): cooldown
        self.alarm_centres = AlarmCentres(config, self.outbox, clock=clock)  # SIA DC-09 receivers, each with its cursor in the outbox
        self.uploads = evidence_uploader(config.upload, outbox_path)  # evidence files to the hub, when the site file says where
        self.monitor = SiteMonitor(self)  # /metrics and telemetry; last, as it reads the parts above

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
        await self._resume()
        will = Will(self._status_topic, _status("offline"), qos=1, retain=True)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.uplink.run())
                tasks.create_task(self.monitor.run())
                if self.uploads is not None:
                    tasks.create_task(self.uploads.run())
                tasks.create_task(self.alarm_centres.run())
                tasks.create_task(self._tick())
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
        resumed = 0
        for escalation in await self.outbox.latest_revisions(now - RESUME_WITHIN_S):
            if escalation.status.final:
                continue
            resumed += 1
            self.dispatcher.adopt(escalation, now)
            device, kind = escalation.incident.device, escalation.incident.kind
            if kind in CONDITIONS:
                self._open_conditions[(device, kind)] = escalation.id
                self.supervisor.reopen(device, kind)
                self.wearables.reopen(device, kind)
        log.info("event=edge_resumed open_escalations=%d pruned_delivered=%d", resumed, pruned)

    # -- the site broker -------------------------------------------------------------------------

    async def _site_session(self, client: Client) -> None:
        for topic_filter in [*self.intake.filters, self._reply_filter]:
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
                # Each message is evaluated here, in arrival order, so sequence numbers follow arrival; what must
                # be stored first continues in a task of its own, so the outbox commits whatever arrives together
                # in one fsync. Everything else (positions, statuses, floods) is acknowledged at once.
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
        """Evaluate one site message; returns what must still be stored before it is acknowledged, if anything.

        Whatever goes wrong is contained to this one message: it is set aside (counted, logged with its topic
        and digest, kept in the outbox's `set_aside` table) and acknowledged, so that the broker does not hand
        it back forever and the edge goes on serving every other device."""
        payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
        topic = message.topic.value
        ack = _once(lambda: client.ack(message))
        try:
            work = self._evaluate(message, topic, payload, ack)
        except Exception as exc:  # noqa: BLE001 - any defect in handling one message must stay with that message
            return self._set_aside("site", topic, payload, exc, ack)
        return None if work is None else self._contained(work, "site", topic, payload, ack)

    def _evaluate(self, message: Message, topic: str, payload: bytes, ack: Callable[[], None]) -> Coroutine[Any, Any, None] | None:
        now = self.clock()
        if topic not in self.intake.routes and topic_matches(self._reply_filter, topic):
            step = self._guard_reply(topic.split("/")[-2], payload, now)
            return self._carry_out([step] if step else [], ack=ack)
        steps: list[Step] = []
        alarms: list[tuple[Event, Incident]] = []
        for event in self.intake.decode(topic, payload, now, retained=message.retain):
            self.monitor.event(event)
            steps += self._observe(event, now)
            if event.kind not in ALARM_EVENTS:
                continue  # only alarms raise incidents
            wearer = self.board.wearer(event.device)
            incident = incident_for(
                event, self.config.device(event.device), wearer.guard.id if wearer else None, wearer.point if wearer else None
            )
            if incident is not None:
                alarms.append((event, incident))
        source = self._source(topic, message, payload, alarms[0][0]) if alarms else None
        if source is not None and (source.startswith(_DEVICE_SOURCE) or getattr(message, "dup", False)) and self.outbox.holds(source):
            # A copy of a press already stored (a redelivery, a resend or a replay): escalated once, not twice.
            self.redeliveries_skipped += 1
            event = alarms[0][0]
            self.intake.rejections.record(event.device, "replayed_seq", f"copy of a stored alarm ({source})", now)
            if source.startswith(_DEVICE_SOURCE):
                self._spawn(self._confirm_to_device(source, stored_first=True))  # its first confirmation may have been lost
            alarms = []
        if not steps and not alarms:
            ack()
            return None
        if not alarms:
            return self._carry_out(steps, ack=ack)
        self.outbox.claim(source)  # now: a copy may be evaluated before this one is stored
        try:
            steps += [self.dispatcher.open(incident, now) for _, incident in alarms]
        except Exception:
            self.outbox.unclaim(source)
            raise
        return self._stored_or_unclaimed(self._carry_out(steps, ack=ack, source=source), source)

    async def _stored_or_unclaimed(self, work: Coroutine[Any, Any, None], source: str) -> None:
        """Run `work`; if it fails, a copy of its device message may still raise the alarm (a duplicate beats a loss)."""
        try:
            await work
        except Exception:
            self.outbox.unclaim(source)
            raise

    @staticmethod
    def _source(topic: str, message: Message, payload: bytes, alarm: Event) -> str:
        """The identity of the device message an alarm came from, by which a copy of it is recognised.

        A native device's message is known by device, boot and seq whatever the broker does with it; any other
        message by topic, packet id and digest, which identifies a broker's redelivery (DUP) of it."""
        if alarm.attrs.get("boot") is not None and "seq" in alarm.attrs:
            return f"{_DEVICE_SOURCE}{alarm.device}@{alarm.attrs['boot']}#{alarm.attrs['seq']}"
        return f"{topic}|{message.mid}|{hashlib.sha256(payload).hexdigest()[:32]}"

    async def _confirm_to_device(self, source: str, *, stored_first: bool = False) -> None:
        """Tell native firmware its alarm is stored, so it stops resending it (`source` is `device:<id>@<boot>#<seq>`)."""
        if stored_first:
            await self.outbox.flush()  # a copy's original may still be on its way to the disk
        device, _, rest = source.removeprefix(_DEVICE_SOURCE).rpartition("@")
        boot, _, seq = rest.partition("#")
        confirmation = json.dumps({"seq": int(seq), "boot": int(boot)}).encode()
        await self._publish_site(topics.native_device_ack(self.config.site.id, device), confirmation)

    async def _contained(self, work: Coroutine[Any, Any, None], origin: str, topic: str, payload: bytes, ack: Callable[[], None] | None) -> None:
        """Run what a message still has to do; a failure sets the message aside instead of ending the edge."""
        try:
            await work
        except Exception as exc:  # noqa: BLE001
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

    def _observe(self, event: Event, now: float) -> list[Step]:
        """Everything an event changes besides alarms: positions, wearables, device conditions."""
        changes = self.supervisor.heard(event)
        self._device_state(event.device, self.device_states.heard(event, now))
        placed = self.board.observe(event)
        if placed is not None and placed.placed is not None:
            changes += self.wearables.position(
                event.device, placed.placed.point, placed.placed.accuracy_m, placed.guard.post, placed.state is GuardState.AVAILABLE
            )
        if event.kind is EventKind.VITALS:
            changes += self.wearables.vitals(event)
        elif event.kind is EventKind.MOTION:
            started = self.wearables.motion(event)
            wearer = self.board.wearer(event.device)
            if started and wearer:
                self._send_prealarm(wearer.guard.id, started.detail, started.cancel_within_s)
        return [step for change in changes if (step := self._condition(change, now))]

    def _guard_reply(self, guard: str, payload: bytes, now: float) -> Step | None:
        status = self.board.guards.get(guard)
        try:
            if status is None:
                raise PayloadError("unknown_guard", f"no guard {guard!r} at this site")
            reply = Reply.model_validate(json_object(payload))
        except (PayloadError, ValidationError) as exc:
            reason = exc.reason if isinstance(exc, PayloadError) else "invalid_reply"
            self.intake.rejections.record(f"guard:{guard}" if status else "(unknown)", reason, str(exc)[:200], now)
            return None
        if reply.answer is Answer.CANCEL_PREALARM:
            if status.guard.wearable and self.wearables.cancel(status.guard.wearable):
                log.info("event=prealarm_cancelled guard=%s", guard)
            return None
        return self.dispatcher.answer(guard, reply.answer, reply.escalation, now)

    # -- timers and the police -------------------------------------------------------------------

    async def _tick(self) -> None:
        saved_at = self.clock()
        while True:
            await asyncio.sleep(self.config.supervision.check_every_s)
            try:
                await self._check(self.clock())
                self._report_guards()
                if self.clock() - saved_at >= SAVE_REPLAYS_EVERY_S:
                    saved_at = self.clock()
                    await self._save_replays()
            except Exception:  # noqa: BLE001 - a defect in one check must not stop the next ones
                self.set_aside["timer"] += 1
                log.exception("event=timer_check_failed")

    async def _check(self, now: float) -> None:
        """What time alone changes: shifts, silent devices, man-down alarms, unanswered offers."""
        self.board.refresh_duty(now)
        self._home_assistant()  # shifts start and end
        steps = [step for change in self.supervisor.overdue(now) if (step := self._condition(change, now))]
        for device, detail in self.wearables.man_down(now):
            steps.append(self.dispatcher.open(self._man_down(device, detail, now), now))
        steps += self.dispatcher.expire(now)
        if steps:
            await self._carry_out(steps)

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
        try:
            self._obey(payload)
        except Exception as exc:  # noqa: BLE001 - a bad command must not end the uplink
            self._spawn(self._set_aside("police", self.uplink.commands_topic, payload, exc))

    def _obey(self, payload: bytes) -> None:
        now = self.clock()
        try:
            command = PoliceCommand.model_validate(json_object(payload))
        except (PayloadError, ValidationError) as exc:
            log.warning("event=police_command_rejected error=%r", str(exc)[:300])
            return
        log.info("event=police_command command=%s escalation=%s by=%s", command.command.value, command.escalation, command.by)
        outcome = self.dispatcher.command(command, now)  # the new revision, or why the command was refused
        self.uplink.answer(command_answer(command, outcome))
        if isinstance(outcome, Step):
            self._spawn(self._contained(self._carry_out([outcome]), "police", self.uplink.commands_topic, payload, None))

    # -- effects ---------------------------------------------------------------------------------

    async def _carry_out(self, steps: list[Step], ack: Callable[[], None] | None = None, source: str | None = None) -> None:
        """Store each revision (durably, in order), then acknowledge the source message, then tell the guards."""
        await asyncio.gather(*(self.outbox.append(step.escalation, source) for step in steps))
        if ack:
            ack()  # only now may the broker forget the message
        if source is not None and source.startswith(_DEVICE_SOURCE):
            await self._confirm_to_device(source)
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

    def _device_state(self, device: str, doc: dict[str, object] | None) -> None:
        if doc is not None:
            self._spawn(self._publish_site(topics.device_state(self.config.site.id, device), json.dumps(doc).encode(), retain=True))

    def _condition(self, change: Change, now: float) -> Step | None:
        """A device or guard condition raised (revision 1) or cleared (a resolving revision)."""
        key = (change.device, change.kind)
        if change.kind is IncidentKind.DEVICE_OFFLINE:
            self._device_state(change.device, self.device_states.online(change.device, not change.raised, now))
        log.warning("event=device_condition device=%s kind=%s raised=%s detail=%r", change.device, change.kind.value, change.raised, change.detail)
        if change.raised:
            wearer = self.board.wearer(change.device)
            incident = condition_incident(
                change.kind, self.config.device(change.device) or self.config.camera(change.device), change.detail, now,
                wearer.point if wearer else None, wearer.guard.id if wearer else None,
            )
            step = self.dispatcher.open(incident, now)
            self._open_conditions[key] = step.escalation.id
            return step
        escalation_id = self._open_conditions.pop(key, None)
        return self.dispatcher.resolve(escalation_id, now, change.detail) if escalation_id else None

    def _camera_event(self, event: CameraEvent) -> None:
        try:
            self._on_camera_event(event)
        except Exception as exc:  # noqa: BLE001 - one bad camera event must not end the edge
            self._spawn(self._set_aside("camera", topics.camera_events(self.config.site.id, event.camera), json.dumps(event.to_dict()).encode(), exc))

    def _on_camera_event(self, event: CameraEvent) -> None:
        """A camera worker's event: onto the site's camera event bus, and an incident when its rule is armed
        (or a camera condition raised or cleared); an incident asks the camera for its snapshot and clip."""
        camera, now = self.config.camera(event.camera), self.clock()
        if camera is None:
            return
        self._spawn(self._publish_site(topics.camera_events(self.config.site.id, camera.id), json.dumps(event.to_dict()).encode()))
        if event.kind in CAMERA_CONDITIONS:
            kind, raised = CAMERA_CONDITIONS[event.kind]
            step = self._condition(Change(camera.id, kind, raised, event.detail or event.kind.value), now)
        else:
            incident = camera_incident(event, camera, {s.id: s for s in self.config.schedules}, self.config.site.timezone)
            rule = (camera.id, event.kind.value, event.zone or event.line)
            if incident is None or now < self._camera_quiet_until.get(rule, 0.0):
                return  # not armed, or the same rule raised an incident moments ago
            self._camera_quiet_until[rule] = now + camera.cooldown_s
            step = self.dispatcher.open(incident, now)
        if step is None:
            return
        if step.escalation.revision == 1 and event.kind is not CameraEventKind.OFFLINE:
            self.cameras[camera.id].request_evidence(step.escalation.id, event.time, event.box)
        self._spawn(self._carry_out([step]))

    def _camera_evidence(self, escalation_id: str, evidence: Evidence) -> None:
        """A snapshot or clip is written: the escalation's next revision lists it."""
        try:
            self._attach(escalation_id, evidence)
        except Exception as exc:  # noqa: BLE001
            self._spawn(self._set_aside("camera", evidence.path, evidence.model_dump_json().encode(), exc))

    def _attach(self, escalation_id: str, evidence: Evidence) -> None:
        step = self.dispatcher.attach(escalation_id, evidence, self.clock())
        if step is None:
            log.warning("event=evidence_after_close escalation=%s kind=%s path=%s", escalation_id, evidence.kind, evidence.path)
            return
        self._spawn(self._carry_out([step]))
        if self.uploads is not None:
            self.uploads.submit(escalation_id, evidence)

    def _man_down(self, device: str, detail: str, now: float) -> Incident:
        wearer = self.board.wearer(device)
        point = wearer.point if wearer else None
        return Incident(
            kind=IncidentKind.MAN_DOWN, severity=Severity.CRITICAL, device=device, zone=self.config.device(device).zone,
            location=Location.of(point) if point else None, raised_by_guard=wearer.guard.id if wearer else None,
            detected_at=iso(now), detail=detail,
        )

    def _send_prealarm(self, guard: str, detail: str, cancel_within_s: float) -> None:
        log.warning("event=man_down_prealarm guard=%s detail=%r", guard, detail)
        alert = PreAlarm(kind=IncidentKind.MAN_DOWN, detail=detail, cancel_within_s=cancel_within_s)
        self._spawn(self._publish_site(topics.guard_alert(self.config.site.id, guard), alert.model_dump_json().encode()))

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


_DEVICE_SOURCE = "device:"  # a source known by device, boot and seq (see EdgeNode._source)


def _once(action: Callable[[], None]) -> Callable[[], None]:
    """`action`, to be done at most once however often it is called."""
    done = False

    def once() -> None:
        nonlocal done
        if not done:
            done = True
            action()

    return once
