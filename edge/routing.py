"""What a site does with each input, decided without doing it: a message, a tick of the clock, a police command or a
camera event becomes a `Plan` (revisions to store, site messages to publish, an alarm's identity to claim). The edge
node (edge/node.py) carries plans out: it stores, acknowledges and publishes. No sockets, files or clocks here: the
time is passed in, and so is the outbox's one question (`holds`: is this device message already stored?).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import ValidationError

from device_drivers.payload import PayloadError, json_object
from device_drivers.registry import driver
from edge.device_state import DeviceStates
from edge.dispatch import Dispatcher, Step
from edge.guards import GuardBoard
from edge.intake import Intake
from edge.rules import ALARM_EVENTS, CAMERA_CONDITIONS, CONDITIONS, camera_incident, condition_incident, incident_for
from edge.supervision import Change, Supervisor
from edge.vision.events import CameraEvent, CameraEventKind
from edge.wearables import WearableWatch
from guardlink import topics
from guardlink.models import (
    Answer,
    Escalation,
    Event,
    EventKind,
    Evidence,
    GuardState,
    Incident,
    IncidentKind,
    Location,
    PoliceCommand,
    PreAlarm,
    Reply,
    Severity,
    iso,
)
from guardlink.siteconfig import SiteConfig

log = logging.getLogger(__name__)

DEVICE_SOURCE = "device:"  # a source known by device, boot and seq: `device:<id>@<boot>#<seq>`


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message from the site broker, as the router needs it."""

    topic: str
    payload: bytes
    retained: bool = False
    dup: bool = False  # the broker's redelivery flag
    mid: int = 0  # the broker's packet id


@dataclass(frozen=True, slots=True)
class EvidenceRequest:
    """Ask a camera for the snapshot and clip of an incident."""

    camera: str
    escalation: str
    at: float
    box: tuple[float, float, float, float] | None = None  # the object's box, as a fraction of the frame


@dataclass(slots=True)
class Plan:
    """What one input asks of the edge. Empty: acknowledge the message and do nothing else."""

    events: list[Event] = field(default_factory=list)  # decoded from the message (for metrics and telemetry)
    steps: list[Step] = field(default_factory=list)  # revisions to store (in order) and the offers they bring
    source: str | None = None  # the device message the new alarms came from: claim it now, store it with them
    confirm: str | None = None  # a copy of a stored native alarm: confirm it to the device again
    publish: list[tuple[str, bytes, bool]] = field(default_factory=list)  # (topic, payload, retain) on the site broker
    evidence: list[EvidenceRequest] = field(default_factory=list)

    @property
    def stores(self) -> bool:
        """True when the message may be acknowledged only after something is stored."""
        return bool(self.steps)


class Router:
    """A site's state (guards, devices, conditions, open jobs) and the decisions each input brings."""

    def __init__(self, config: SiteConfig, now: float, *, holds: Callable[[str], bool], next_sequence: Callable[[], int]) -> None:
        self.config = config
        self.holds = holds
        self.intake = Intake(config)
        self.board = GuardBoard(config, now)
        self.dispatcher = Dispatcher(config, self.board, next_sequence)
        self.wearables = WearableWatch(config.wearables)
        self.device_states = DeviceStates([d.id for d in config.devices])
        sup = config.supervision
        heartbeats = {d.id: d.heartbeat_s or driver(d.driver).heartbeat_s for d in config.devices}
        self.supervisor = Supervisor(heartbeats, missed=sup.missed_heartbeats, low_battery_percent=sup.low_battery_percent, now=now)
        self.reply_filter = topics.guard_reply(config.site.id, "+")
        self.copies_skipped = 0  # copies of stored alarms (redeliveries, resends, replays) not escalated again
        self._open_conditions: dict[tuple[str, IncidentKind], str] = {}  # (device, kind) -> escalation id
        self._camera_quiet_until: dict[tuple[str, str, str | None], float] = {}  # (camera, kind, zone or line): cooldown

    @property
    def filters(self) -> list[str]:
        """Everything the edge subscribes to on the site broker."""
        return [*self.intake.filters, self.reply_filter]

    # -- inputs ------------------------------------------------------------------------------------

    def route(self, message: Inbound, now: float) -> Plan:
        """A site-broker message: a guard's answer, or a device report with whatever it raises."""
        plan = Plan()
        if message.topic not in self.intake.routes and _matches(self.reply_filter, message.topic):
            self._guard_reply(plan, message.topic.split("/")[-2], message.payload, now)
            return plan
        alarms: list[tuple[Event, Incident]] = []
        for event in self.intake.decode(message.topic, message.payload, now, retained=message.retained):
            plan.events.append(event)
            self._observe(plan, event, now)
            if event.kind not in ALARM_EVENTS:
                continue  # only alarms raise incidents
            device, wearer = self.config.device(event.device), self.board.wearer(event.device)
            if device is None:
                continue  # the intake routes configured devices only
            incident = incident_for(event, device, wearer.guard.id if wearer else None, wearer.point if wearer else None)
            if incident is not None:
                alarms.append((event, incident))
        if not alarms:
            return plan
        event = alarms[0][0]
        source = message_source(message, event)
        if (source.startswith(DEVICE_SOURCE) or message.dup) and self.holds(source):
            # A copy of a press already stored (a redelivery, a resend or a replay): escalated once, not twice.
            self.copies_skipped += 1
            self.intake.rejections.record(event.device, "replayed_seq", f"copy of a stored alarm ({source})", now)
            plan.confirm = source if source.startswith(DEVICE_SOURCE) else None  # its first confirmation may have been lost
            return plan
        plan.source = source
        plan.steps += [self.dispatcher.open(incident, now) for _, incident in alarms]
        return plan

    def tick(self, now: float) -> Plan:
        """What time alone changes: shifts, silent devices, man-down alarms, unanswered offers."""
        plan = Plan()
        self.board.refresh_duty(now)
        for change in self.supervisor.overdue(now):
            self._condition(plan, change, now)
        for device, detail in self.wearables.man_down(now):
            plan.steps.append(self.dispatcher.open(self._man_down(device, detail, now), now))
        plan.steps += self.dispatcher.expire(now)
        return plan

    def command(self, payload: bytes, now: float) -> tuple[PoliceCommand, Step | str] | None:
        """A police command: the command and its outcome (the new revision, or why it was refused); None when unreadable."""
        try:
            command = PoliceCommand.model_validate(json_object(payload))
        except (PayloadError, ValidationError) as exc:
            log.warning("event=police_command_rejected error=%r", str(exc)[:300])
            return None
        log.info("event=police_command command=%s escalation=%s by=%s", command.command.value, command.escalation, command.by)
        return command, self.dispatcher.command(command, now)

    def camera_event(self, event: CameraEvent, now: float) -> Plan:
        """A camera worker's event: onto the site's camera event bus, and an incident when its rule is armed (or a camera
        condition raised or cleared); a new incident asks the camera for its snapshot and clip."""
        plan = Plan()
        camera = self.config.camera(event.camera)
        if camera is None:
            return plan
        plan.publish.append((topics.camera_events(self.config.site.id, camera.id), json.dumps(event.to_dict()).encode(), False))
        if event.kind in CAMERA_CONDITIONS:
            kind, raised = CAMERA_CONDITIONS[event.kind]
            self._condition(plan, Change(camera.id, kind, raised, event.detail or event.kind.value), now)
        else:
            incident = camera_incident(event, camera, {s.id: s for s in self.config.schedules}, self.config.site.timezone)
            rule = (camera.id, event.kind.value, event.zone or event.line)
            if incident is None or now < self._camera_quiet_until.get(rule, 0.0):
                return plan  # not armed, or the same rule raised an incident moments ago
            self._camera_quiet_until[rule] = now + camera.cooldown_s
            plan.steps.append(self.dispatcher.open(incident, now))
        for step in plan.steps:
            if step.escalation.revision == 1 and event.kind is not CameraEventKind.OFFLINE:
                plan.evidence.append(EvidenceRequest(camera.id, step.escalation.id, event.time, event.box))
        return plan

    def attach(self, escalation_id: str, evidence: Evidence, now: float) -> Plan:
        """A snapshot or clip is written: the escalation's next revision lists it."""
        step = self.dispatcher.attach(escalation_id, evidence, now)
        if step is None:
            log.warning("event=evidence_after_close escalation=%s kind=%s path=%s", escalation_id, evidence.kind, evidence.path)
            return Plan()
        return Plan(steps=[step])

    def resume(self, escalations: list[Escalation], now: float) -> int:
        """Take up what was open when the edge stopped: offers run again, conditions wait to clear. Returns how many."""
        resumed = 0
        for escalation in escalations:
            if escalation.status.final:
                continue
            resumed += 1
            self.dispatcher.adopt(escalation, now)
            device, kind = escalation.incident.device, escalation.incident.kind
            if kind in CONDITIONS:
                self._open_conditions[(device, kind)] = escalation.id
                self.supervisor.reopen(device, kind)
                self.wearables.reopen(device, kind)
        return resumed

    def shift(self, seconds: float) -> None:
        """The wall clock stepped by `seconds` (an NTP correction): every deadline and age keeps its length, so offers,
        heartbeats and pre-alarms neither fire in bulk nor wait an hour. Documents keep telling the wall time."""
        for part in (self.intake, self.board, self.dispatcher, self.wearables, self.supervisor):
            part.shift(seconds)
        self._camera_quiet_until = {rule: until + seconds for rule, until in self._camera_quiet_until.items()}

    # -- decisions ---------------------------------------------------------------------------------

    def _observe(self, plan: Plan, event: Event, now: float) -> None:
        """Everything an event changes besides alarms: positions, wearables, device conditions."""
        changes = self.supervisor.heard(event)
        self._device_state(plan, event.device, self.device_states.heard(event, now))
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
                log.warning("event=man_down_prealarm guard=%s detail=%r", wearer.guard.id, started.detail)
                alert = PreAlarm(kind=IncidentKind.MAN_DOWN, detail=started.detail, cancel_within_s=started.cancel_within_s)
                plan.publish.append((topics.guard_alert(self.config.site.id, wearer.guard.id), alert.model_dump_json().encode(), False))
        for change in changes:
            self._condition(plan, change, now)

    def _guard_reply(self, plan: Plan, guard: str, payload: bytes, now: float) -> None:
        status = self.board.guards.get(guard)
        try:
            if status is None:
                raise PayloadError("unknown_guard", f"no guard {guard!r} at this site")
            reply = Reply.model_validate(json_object(payload))
        except (PayloadError, ValidationError) as exc:
            reason = exc.reason if isinstance(exc, PayloadError) else "invalid_reply"
            self.intake.rejections.record(f"guard:{guard}" if status else "(unknown)", reason, str(exc)[:200], now)
            return
        if reply.answer is Answer.CANCEL_PREALARM:
            if status.guard.wearable and self.wearables.cancel(status.guard.wearable):
                log.info("event=prealarm_cancelled guard=%s", guard)
            return
        step = self.dispatcher.answer(guard, reply.answer, reply.escalation, now)
        if step is not None:
            plan.steps.append(step)

    def _condition(self, plan: Plan, change: Change, now: float) -> None:
        """A device or guard condition raised (revision 1) or cleared (a resolving revision)."""
        key = (change.device, change.kind)
        if change.kind is IncidentKind.DEVICE_OFFLINE:
            self._device_state(plan, change.device, self.device_states.online(change.device, not change.raised, now))
        log.warning("event=device_condition device=%s kind=%s raised=%s detail=%r", change.device, change.kind.value, change.raised, change.detail)
        if change.raised:
            wearer = self.board.wearer(change.device)
            source = self.config.device(change.device) or self.config.camera(change.device)
            if source is None:
                log.warning("event=condition_unplaced device=%s kind=%s", change.device, change.kind.value)
                return
            incident = condition_incident(
                change.kind, source, change.detail, now, wearer.point if wearer else None, wearer.guard.id if wearer else None,
            )
            step = self.dispatcher.open(incident, now)
            self._open_conditions[key] = step.escalation.id
            plan.steps.append(step)
            return
        escalation_id = self._open_conditions.pop(key, None)
        resolved = self.dispatcher.resolve(escalation_id, now, change.detail) if escalation_id else None
        if resolved is not None:
            plan.steps.append(resolved)

    def _device_state(self, plan: Plan, device: str, doc: dict[str, object] | None) -> None:
        if doc is not None:
            plan.publish.append((topics.device_state(self.config.site.id, device), json.dumps(doc).encode(), True))

    def _man_down(self, device: str, detail: str, now: float) -> Incident:
        wearer = self.board.wearer(device)
        point = wearer.point if wearer else None
        configured = self.config.device(device)
        return Incident(
            kind=IncidentKind.MAN_DOWN, severity=Severity.CRITICAL, device=device, zone=configured.zone if configured else None,
            location=Location.of(point) if point else None, raised_by_guard=wearer.guard.id if wearer else None,
            detected_at=iso(now), detail=detail,
        )


def message_source(message: Inbound, alarm: Event) -> str:
    """The identity of the device message an alarm came from, by which a copy of it is recognised.

    A native device's message is known by device, boot and seq whatever the broker does with it; any other
    message by topic, packet id and digest, which identifies a broker's redelivery (DUP) of it."""
    if alarm.attrs.get("boot") is not None and "seq" in alarm.attrs:
        return f"{DEVICE_SOURCE}{alarm.device}@{alarm.attrs['boot']}#{alarm.attrs['seq']}"
    return f"{message.topic}|{message.mid}|{hashlib.sha256(message.payload).hexdigest()[:32]}"


def device_confirmation(source: str) -> tuple[str, bytes]:
    """The topic and payload confirming a native device's alarm (`source` is `device:<id>@<boot>#<seq>`)."""
    device, _, rest = source.removeprefix(DEVICE_SOURCE).rpartition("@")
    boot, _, seq = rest.partition("#")
    return device, json.dumps({"seq": int(seq), "boot": int(boot)}).encode()


def _matches(topic_filter: str, topic: str) -> bool:
    from paho.mqtt.client import topic_matches_sub

    return topic_matches_sub(topic_filter, topic)
