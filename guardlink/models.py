"""The contract: events from devices, incidents, guard assignments and the escalation document."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from guardlink.geo import LatLon

ESCALATION_SCHEMA: Final = "guardlink.escalation/1"


class EventKind(StrEnum):
    """What a driver saw a device report."""

    PANIC = "panic"  # a panic button press (audible alarm)
    DURESS = "duress"  # a silent alarm: the person pressing it is under threat
    SOS = "sos"  # a guard's wearable SOS button
    BUTTON = "button"  # a press that the site does not treat as an alarm (test, release, ...)
    POSITION = "position"  # a wearable or phone reports where it is
    DEVICE_STATUS = "device_status"  # battery, link quality
    TAMPER = "tamper"  # the device's case was opened or it was removed from its mount
    AVAILABILITY = "availability"  # the device (or its bridge) says it is online or offline
    MOTION = "motion"  # a wearable's accelerometer summary (attrs: min_g, max_g, tilt_deg, still)
    VITALS = "vitals"  # a wearable's heart rate (attrs: heart_rate)
    TEST = "test"  # a test press: the chain to the police is checked, nobody is sent
    CONTACT = "contact"  # a door/window contact's state (attrs: open)
    OCCUPANCY = "occupancy"  # a motion/presence sensor's state (attrs: occupied)
    WATER_LEAK = "water_leak"  # a leak sensor's state (attrs: active); a condition raised and cleared
    SMOKE = "smoke"  # a smoke detector's state (attrs: active); a condition raised and cleared
    DETECTION = "detection"  # a camera/NVR saw an object enter a zone (attrs: label, score, zones, camera)


class Severity(StrEnum):
    """How urgently an incident needs people."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class IncidentKind(StrEnum):
    """Closed set of incidents the edge raises."""

    PANIC = "panic"
    DURESS = "duress"
    SOS = "sos"
    DEVICE_OFFLINE = "device_offline"
    LOW_BATTERY = "low_battery"
    TAMPER = "tamper"
    MAN_DOWN = "man_down"  # a guard fell, or lies tilted, and did not move nor cancel the pre-alarm
    ABNORMAL_HEART_RATE = "abnormal_heart_rate"
    LEFT_POST = "left_post"  # an available guard is outside the geofence of their post
    TEST = "test"  # a test press: reported to the police as a test, nobody is sent
    WATER_LEAK = "water_leak"
    SMOKE = "smoke"
    INTRUSION = "intrusion"  # a person or vehicle entered a watched zone (cameras)
    LOITERING = "loitering"  # someone stayed in a camera zone longer than its rule allows
    LINE_CROSSING = "line_crossing"  # someone crossed a camera tripwire in a counted direction
    CROWDING = "crowding"  # more people in a camera zone than its rule allows
    CAMERA_TAMPER = "camera_tamper"  # a camera was covered, defocused or moved; cleared when it looks normal again
    CAMERA_OFFLINE = "camera_offline"  # no frames from a camera; cleared when they return


class EscalationStatus(StrEnum):
    """Where an escalation stands, as the police see it."""

    DISPATCHED = "dispatched"  # offers are out, not enough guards have accepted yet
    ASSIGNED = "assigned"  # enough guards accepted and are on their way
    ON_SCENE = "on_scene"  # a guard reported arriving
    NO_GUARD_AVAILABLE = "no_guard_available"  # every candidate declined or did not answer: the police must act
    REPORTED = "reported"  # for the record: nobody needs to be sent (a device went offline ...)
    RESOLVED = "resolved"  # the guard resolved it, or the condition cleared (the device is back ...)
    FALSE_ALARM = "false_alarm"  # the guard on scene found nothing
    CLOSED = "closed"  # the police closed it

    @property
    def final(self) -> bool:
        """No further revisions follow a final status."""
        return self in (EscalationStatus.RESOLVED, EscalationStatus.FALSE_ALARM, EscalationStatus.CLOSED)


class AssignmentState(StrEnum):
    """A guard's part in one incident."""

    OFFERED = "offered"  # waiting for the guard's answer
    ASSIGNED = "assigned"  # accepted
    ON_SCENE = "on_scene"
    DONE = "done"  # the guard reported the incident resolved or a false alarm
    DECLINED = "declined"
    TIMED_OUT = "timed_out"  # no answer within the offer timeout
    WITHDRAWN = "withdrawn"  # the offer or assignment was cancelled (incident closed, enough guards)


class GuardState(StrEnum):
    """Where a guard stands for dispatch."""

    OFF_DUTY = "off_duty"
    AVAILABLE = "available"
    OFFERED = "offered"
    ASSIGNED = "assigned"
    ON_SCENE = "on_scene"


@dataclass(slots=True)
class Event:
    """One decoded device report, in guardlink terms."""

    kind: EventKind
    device: str
    at: float  # epoch seconds when the edge received it
    location: LatLon | None = None
    accuracy_m: float | None = None
    action: str | None = None
    battery: float | None = None
    linkquality: int | None = None
    online: bool | None = None  # AVAILABILITY events
    attrs: dict[str, object] = field(default_factory=dict)


def iso(epoch_s: float) -> datetime:
    """Epoch seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc)


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_serialization_defaults_required=True)


class Location(_Doc):
    """A WGS-84 position in decimal degrees."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)

    @classmethod
    def of(cls, point: LatLon) -> Location:
        return cls(lat=point.lat, lon=point.lon)


class SiteRef(_Doc):
    """The site an escalation comes from."""

    id: str
    name: str
    district: str
    location: Location


class Incident(_Doc):
    """What happened, where, raised by which device (and which guard, if a wearable)."""

    kind: IncidentKind
    severity: Severity
    device: str = Field(description="site device id that raised it")
    zone: str | None = None
    location: Location | None = Field(description="where it happened; null when the device has no known position")
    raised_by_guard: str | None = Field(default=None, description="guard whose wearable raised it")
    device_seq: int | None = Field(default=None, description="the device's own sequence number of the report, when it sends one")
    detected_at: datetime = Field(description="when the edge received the device's report (UTC)")
    detail: str | None = Field(default=None, description="human detail, e.g. 'silent for 95 s (heartbeat 30 s)'")


class Assignment(_Doc):
    """A guard the edge has chosen for the incident."""

    guard: str
    name: str
    roles: list[str]
    state: AssignmentState
    distance_m: float = Field(ge=0, description="great-circle distance from the guard's last position")
    eta_s: float = Field(ge=0, description="walking time to the incident, with penalties for a stale or coarse position")
    guard_location: Location
    position_age_s: float = Field(ge=0, description="age of the guard position used for the choice")
    offered_at: datetime
    answered_at: datetime | None = Field(default=None, description="when the state last changed after the offer")


class Evidence(_Doc):
    """A file the edge wrote for an incident: a snapshot with the object's box drawn, or a clip around the event."""

    kind: Literal["snapshot", "clip"]
    camera: str = Field(description="site camera id")
    path: str = Field(description="where the file is on the edge")
    media_type: Literal["image/jpeg", "video/mp4"]
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    start: datetime = Field(description="time of the first frame (of the only one, for a snapshot)")
    end: datetime = Field(description="time of the last frame")


class Escalation(_Doc):
    """The document the police receive; a new revision on every change, dedupe by (id, revision)."""

    schema_: Literal["guardlink.escalation/1"] = Field(default=ESCALATION_SCHEMA, alias="schema")
    id: str = Field(description="stable unique id (UUIDv7); retries and revisions keep it")
    revision: int = Field(ge=1)
    sequence: int = Field(ge=1, description="per-site order in which the edge stored its revisions (strictly increasing)")
    site: SiteRef
    incident: Incident
    assignments: list[Assignment]
    evidence: list[Evidence] = Field(default_factory=list, description="camera snapshots and clips, added in later revisions as they are written")
    status: EscalationStatus
    guards_needed: int = Field(default=0, ge=0, description="how many guards the incident type asks for")
    acknowledged_by: str | None = Field(default=None, description="the police officer or desk that acknowledged it")
    issued_at: datetime = Field(description="when this revision was made (UTC)")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, json_schema_serialization_defaults_required=True)

    def to_json(self) -> bytes:
        """The wire form published to the police broker."""
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_json(cls, payload: bytes | str) -> Escalation:
        """Parse and validate a wire document."""
        return cls.model_validate_json(payload)


class Offer(_Doc):
    """A job offered to a guard on the wearable's offer topic; `state` withdrawn cancels an earlier offer."""

    escalation: str
    state: Literal["offered", "withdrawn"]
    kind: IncidentKind
    severity: Severity
    device: str
    zone: str | None
    location: Location | None
    distance_m: float
    offered_at: datetime
    answer_within_s: float = Field(description="the offer passes to the next guard after this long without an answer")


class Answer(StrEnum):
    """What a guard's wearable says back."""

    ACCEPT = "accept"
    DECLINE = "decline"
    ON_SCENE = "on_scene"
    RESOLVED = "resolved"
    FALSE_ALARM = "false_alarm"
    CANCEL_PREALARM = "cancel_prealarm"  # "I am fine": cancels a man-down pre-alarm


class Reply(_Doc):
    """A guard's answer on `guardlink/<site>/guards/<guard>/reply`."""

    answer: Answer
    escalation: str | None = Field(default=None, description="the escalation answered; not needed to cancel a pre-alarm")


class PreAlarm(_Doc):
    """Sent to a guard's wearable before a man-down alarm goes out: the guard can still cancel."""

    kind: IncidentKind
    detail: str
    cancel_within_s: float


class CommandKind(StrEnum):
    """What the police can ask of a site."""

    ACKNOWLEDGE = "acknowledge"
    MORE_GUARDS = "more_guards"
    CLOSE = "close"


class PoliceCommand(_Doc):
    """A command from the police on `guardlink/police/<district>/<site>/commands`."""

    command: CommandKind
    escalation: str
    by: str = Field(min_length=1, max_length=64, description="officer or desk issuing it")
    count: int = Field(default=1, ge=1, le=20, description="more_guards: how many more")
    note: str | None = Field(default=None, max_length=500, description="close: why the police closed it (optional; older senders omit it)")
    id: str | None = Field(default=None, max_length=64, description="the sender's id for this command, echoed in the site's CommandAnswer")

    def to_json(self) -> bytes:
        """The wire form; an absent note is left out so edges that predate it still accept the command."""
        return self.model_dump_json(exclude_none=True).encode()


class CommandOutcome(StrEnum):
    """What a site did with a police command."""

    APPLIED = "applied"
    REFUSED = "refused"


class CommandAnswer(_Doc):
    """A site's answer to a police command, on `guardlink/police/<district>/<site>/answers` (QoS 1, not retained)."""

    schema_: Literal["guardlink.command-answer/1"] = Field(default="guardlink.command-answer/1", alias="schema")
    command_id: str | None = Field(description="the command's `id`, when it had one")
    command: str = Field(description="the command as received (acknowledge, more_guards, close), or what could be read of it")
    escalation: str | None = Field(description="the escalation's full id, or the reference as received when it matched none")
    outcome: CommandOutcome
    reason: str | None = Field(default=None, description="refused: why, for the officer")
    revision: int | None = Field(default=None, description="applied: the escalation revision the command made")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, json_schema_serialization_defaults_required=True)

    def to_json(self) -> bytes:
        """The wire form."""
        return self.model_dump_json(by_alias=True).encode()


class ReceivedRevision(_Doc):
    """One escalation revision the command centre has committed."""

    id: str
    revision: int = Field(ge=1)


class Receipt(_Doc):
    """The command centre's confirmation on `guardlink/police/<district>/<site>/receipts`: these revisions are
    committed to its database. Until a revision's receipt arrives the edge counts it unreceipted and resends it."""

    schema_: Literal["guardlink.receipt/1"] = Field(default="guardlink.receipt/1", alias="schema")
    received: list[ReceivedRevision] = Field(min_length=1, max_length=1000)
    at: datetime = Field(description="when the command centre committed them (UTC)")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, json_schema_serialization_defaults_required=True)


class GuardReport(_Doc):
    """One guard as the edge sees it."""

    id: str
    name: str
    roles: list[str]
    state: GuardState
    job: str | None = Field(default=None, description="the escalation the guard is offered, assigned or on scene for")
    location: Location | None = Field(default=None, description="last known position; null when never placed")
    accuracy_m: float | None = Field(default=None, ge=0)
    position_at: datetime | None = Field(default=None, description="when that position was reported (UTC)")


class GuardsReport(_Doc):
    """A site's guards on `guardlink/police/<district>/<site>/guards`: sent when a guard's state or position
    changes, at most once every few seconds per site, and always complete (every guard of the site)."""

    schema_: Literal["guardlink.guards/1"] = Field(default="guardlink.guards/1", alias="schema")
    site: str
    guards: list[GuardReport]
    at: datetime = Field(description="when the edge made this report (UTC)")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, json_schema_serialization_defaults_required=True)


def escalation_json_schema() -> dict[str, object]:
    """JSON Schema of the escalation document, as committed in guardlink/schemas/."""
    schema = Escalation.model_json_schema(by_alias=True, mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": ESCALATION_SCHEMA, **schema}
