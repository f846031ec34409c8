"""The contract of patrol tasks and field reports: what the command centre pushes to a site for a guard, and what a
guard's app sends back through the site's edge (a task answer, a checkpoint scan, an information tip)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from guardlink.models import Location

TIP_TEXT_MAX = 2000
TIP_PHOTO_MAX_BYTES = 2 * 1024 * 1024  # a phone photo, scaled down by the app; larger ones are refused
TIP_CATEGORIES = ("suspicious_person", "suspicious_vehicle", "hazard", "dispute", "fraud", "other")


class TaskKind(StrEnum):
    """What the command centre sends guards to do."""

    PATROL = "patrol"
    HAZARD_INSPECTION = "hazard_inspection"  # hidden-hazard inspection
    INFORMATION_COLLECTION = "information_collection"
    DISPUTE_MEDIATION = "dispute_mediation"
    ANTI_FRAUD = "anti_fraud"  # anti-fraud publicity


class TaskState(StrEnum):
    """Where a task stands."""

    OFFERED = "offered"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    DONE = "done"
    WITHDRAWN = "withdrawn"  # the command centre took it back

    @property
    def final(self) -> bool:
        return self in (TaskState.DECLINED, TaskState.DONE, TaskState.WITHDRAWN)


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_json(self) -> bytes:
        """The wire form."""
        return self.model_dump_json(by_alias=True).encode()


class TaskTarget(_Doc):
    """Where the task is: a hotspot grid cell or a patrol point."""

    kind: Literal["cell", "point"]
    id: str = Field(max_length=64)
    name: str = Field(default="", max_length=200)
    location: Location
    radius_m: float = Field(gt=0, le=50_000)


class PatrolTask(_Doc):
    """A task for one guard on `guardlink/police/<district>/<site>/tasks/<task>` (retained, QoS 1); a new revision on every change."""

    schema_: Literal["guardlink.task/1"] = Field(default="guardlink.task/1", alias="schema")
    id: str = Field(max_length=64)
    revision: int = Field(ge=1)
    site: str
    guard: str
    kind: TaskKind
    state: TaskState
    target: TaskTarget
    start: datetime
    end: datetime
    note: str = Field(default="", max_length=500)
    distance_m: float | None = Field(default=None, description="from the guard's post (or last position) when chosen")
    issued_at: datetime


class TaskAnswer(_Doc):
    """A guard's answer to a task, sent by the site on `guardlink/police/<district>/<site>/field`."""

    schema_: Literal["guardlink.task-answer/1"] = Field(default="guardlink.task-answer/1", alias="schema")
    id: str = Field(min_length=8, max_length=64, description="the app's id for this answer: a resent copy is recognised")
    task: str = Field(max_length=64)
    guard: str = Field(max_length=64)
    answer: Literal["accept", "decline", "done"]
    at: datetime


class ScanCheckin(_Doc):
    """A guard scanned a checkpoint's QR code in the guard app."""

    schema_: Literal["guardlink.checkin/1"] = Field(default="guardlink.checkin/1", alias="schema")
    id: str = Field(min_length=8, max_length=64)
    guard: str = Field(max_length=64)
    code: str = Field(min_length=1, max_length=200, description="the QR code's text as scanned (or typed)")
    location: Location | None = None
    at: datetime


class Tip(_Doc):
    """An information tip from a guard: category, text, an optional photo (JPEG/PNG/WebP, base64) and where."""

    schema_: Literal["guardlink.tip/1"] = Field(default="guardlink.tip/1", alias="schema")
    id: str = Field(min_length=8, max_length=64)
    guard: str = Field(max_length=64)
    category: Literal[TIP_CATEGORIES]  # type: ignore[valid-type]
    text: str = Field(min_length=1, max_length=TIP_TEXT_MAX)
    location: Location | None = None
    photo: str | None = Field(default=None, max_length=(TIP_PHOTO_MAX_BYTES * 4) // 3 + 8, description="base64 of the image")
    photo_type: Literal["image/jpeg", "image/png", "image/webp"] | None = None
    at: datetime


FieldReport = Annotated[TaskAnswer | ScanCheckin | Tip, Field(discriminator="schema_")]


class FieldEnvelope(BaseModel):
    """Parses any field report by its `schema`."""

    report: FieldReport
