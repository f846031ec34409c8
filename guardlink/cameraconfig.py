"""Camera configuration: source, motion detection, object filters, tracker, zones, lines, rules, tamper, evidence.

Image coordinates are fractions of the frame, `[x, y]` with `[0, 0]` the top-left corner and `[1, 1]` the
bottom-right, so a configuration survives a change of stream resolution. Schedules are site-wide weekly time
windows that arm rules ("after 22:00"); a rule without a schedule is always armed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"  # the same ids as the site file's
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Point = tuple[float, float]
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _fractions(points: list[Point]) -> list[Point]:
    for x, y in points:
        if not (0 <= x <= 1 and 0 <= y <= 1):
            raise ValueError(f"point [{x}, {y}] is outside the frame; coordinates are fractions of the frame, 0 to 1")
    return points


class Window(_Model):
    """Days and a time of day range; a range that ends at or before its start runs past midnight."""

    days: list[Day] = Field(default_factory=lambda: list(DAYS), description="days the window starts on (default every day)")
    start: str = Field(description="HH:MM, local time of the schedule")
    end: str = Field(description="HH:MM (24:00 allowed); at or before `start` means the next day")

    @field_validator("start", "end")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        if not _TIME.match(value):
            raise ValueError(f"{value!r} is not a time of day; write HH:MM, e.g. '22:00'")
        return value

    def contains(self, local: datetime) -> bool:
        """Whether a local wall-clock time falls in this window."""
        minute = local.hour * 60 + local.minute + local.second / 60
        start, end = _minutes(self.start), _minutes(self.end)
        today, yesterday = DAYS[local.weekday()], DAYS[(local.weekday() - 1) % 7]
        if start < end:
            return today in self.days and start <= minute < end
        return (today in self.days and minute >= start) or (yesterday in self.days and minute < end)


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


class Schedule(_Model):
    """A named set of weekly windows in which the rules that refer to it are armed (nights, weekends ...)."""

    id: str = Field(pattern=ID_PATTERN)
    timezone: str | None = Field(default=None, description="IANA time zone, e.g. Asia/Shanghai; the edge's local time when omitted")
    windows: list[Window] = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str | None) -> str | None:
        if name is not None:
            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {name!r}; use an IANA name such as 'Asia/Shanghai'") from None
        return name

    def armed(self, epoch_s: float) -> bool:
        """Whether the schedule is on at this instant."""
        local = datetime.fromtimestamp(epoch_s, ZoneInfo(self.timezone) if self.timezone else None)
        return any(window.contains(local) for window in self.windows)


class MotionSettings(_Model):
    """The motion core: a running-average background of the luma plane at a small detection size."""

    frame_height: int = Field(default=90, ge=36, le=360, description="rows of the detection image; the width follows the aspect ratio")
    threshold: int = Field(default=20, ge=1, le=255, description="luma difference from the background that counts as motion")
    background_s: float = Field(default=2.0, gt=0, description="time constant of the background where nothing moves")
    foreground_s: float = Field(
        default=60.0, gt=0, description="time constant under moving objects: roughly how long a stopped person is still seen"
    )
    dilate: int = Field(default=2, ge=0, le=8, description="dilation steps that join the parts of one object")
    relearn_share: float = Field(
        default=0.35, gt=0, le=1,
        description="share of the frame changing at once, not explained as lighting, after which the background is relearnt (camera moved or covered)",
    )
    learn_s: float = Field(default=1.0, ge=0, description="after start and after a relearn, time spent learning before motion counts")
    mask: list[list[Point]] = Field(default_factory=list, description="polygons where motion is ignored (trees, timestamp overlays)")

    @field_validator("mask")
    @classmethod
    def _polygons(cls, polygons: list[list[Point]]) -> list[list[Point]]:
        for polygon in polygons:
            if len(polygon) < 3:
                raise ValueError("a mask polygon needs at least 3 points")
            _fractions(polygon)
        return polygons


class ObjectFilter(_Model):
    """Which moving regions count as objects: small noise and large lighting blobs are dropped."""

    min_area: float = Field(default=0.0015, ge=0, le=1, description="smallest box, as a share of the frame area")
    max_area: float = Field(default=0.25, gt=0, le=1, description="largest box, as a share of the frame area")
    min_aspect: float = Field(default=0.15, gt=0, description="smallest width / height of a box")
    max_aspect: float = Field(default=5.0, gt=0, description="largest width / height of a box")


class TrackerSettings(_Model):
    """The multi-object tracker that gives objects stable ids."""

    min_hits: int = Field(default=3, ge=1, le=30, description="frames an object must be seen in before it gets a track id")
    max_missed_s: float = Field(default=2.0, gt=0, description="how long a track coasts on its motion model without a detection")


class IntrusionRule(_Model):
    """An object enters the zone (after_s 0) or enters and stays after_s seconds."""

    after_s: float = Field(default=0.0, ge=0, description="seconds inside before it counts")
    schedule: str | None = Field(default=None, description="site schedule that arms the rule; always armed when omitted")


class LoiteringRule(_Model):
    """An object stays in the zone longer than after_s seconds."""

    after_s: float = Field(default=30.0, gt=0, description="seconds inside before it counts as loitering")
    schedule: str | None = Field(default=None, description="site schedule that arms the rule; always armed when omitted")


class CrowdingRule(_Model):
    """More than max_objects tracked objects in the zone for after_s seconds."""

    max_objects: int = Field(ge=1, description="crowding is more objects than this")
    after_s: float = Field(default=3.0, ge=0, description="how long the count must stay above max_objects")
    schedule: str | None = Field(default=None, description="site schedule that arms the rule; always armed when omitted")


class CameraZone(_Model):
    """A polygon in the image; objects are tested at the bottom-centre of their box (where they stand)."""

    id: str = Field(pattern=ID_PATTERN)
    polygon: list[Point] = Field(min_length=3, description="corners as [x, y] fractions of the frame")
    site_zone: str | None = Field(default=None, description="site zone reported for its events; the camera's zone when omitted")
    inertia: int = Field(default=3, ge=1, le=50, description="frames an object must be inside (or outside) before it counts as in (out)")
    intrusion: IntrusionRule | None = Field(default_factory=IntrusionRule, description="null turns it off")
    loitering: LoiteringRule | None = Field(default_factory=LoiteringRule, description="null turns it off")
    crowding: CrowdingRule | None = None

    @field_validator("polygon")
    @classmethod
    def _in_frame(cls, points: list[Point]) -> list[Point]:
        return _fractions(points)


class Line(_Model):
    """A tripwire from its first point to its second; side A is on the left walking from first to second, as seen in the image."""

    id: str = Field(pattern=ID_PATTERN)
    points: list[Point] = Field(min_length=2, max_length=2, description="two [x, y] fractions of the frame")
    direction: Literal["a_to_b", "b_to_a", "both"] = Field(default="both", description="which crossings count")
    site_zone: str | None = Field(default=None, description="site zone reported for its events; the camera's zone when omitted")
    schedule: str | None = Field(default=None, description="site schedule that arms the rule; always armed when omitted")

    @field_validator("points")
    @classmethod
    def _two_distinct(cls, points: list[Point]) -> list[Point]:
        _fractions(points)
        if points[0] == points[1]:
            raise ValueError("the two points of a line must differ")
        return points


class TamperSettings(_Model):
    """Camera tamper: covered, blurred / defocused, or moved away from its view."""

    enabled: bool = True
    after_s: float = Field(default=3.0, ge=0, description="how long the camera must look tampered before it counts")


class EvidenceSettings(_Model):
    """The in-memory JPEG ring and what an incident gets: a snapshot with the box drawn and an MP4 clip."""

    before_s: float = Field(default=10.0, ge=0, le=30, description="seconds of clip before the event")
    after_s: float = Field(default=5.0, ge=0, le=30, description="seconds of clip after the event")
    fps: float = Field(default=4.0, gt=0, le=15, description="frames per second kept in the ring (JPEG costs CPU per frame)")
    width: int = Field(default=640, ge=160, le=3840, description="width of the ring's JPEG frames (video sources)")
    quality: int = Field(default=80, ge=10, le=100, description="JPEG quality of the ring's frames and snapshots")


class CameraSettings(_Model):
    """One camera: where its frames come from and what is watched in them."""

    id: str = Field(pattern=ID_PATTERN)
    name: str | None = None
    source: str | None = Field(
        default=None,
        description="rtsp:// or rtsps:// stream, http(s):// MJPEG stream, mqtt:<topic> (JPEG payloads on the site broker), or a video file",
    )
    detect_fps: float | None = Field(default=None, gt=0, le=60, description="analyse at most this many frames per second; all when omitted")
    decode_threads: int = Field(default=1, ge=1, le=16, description="decoder threads (one per camera scales best across cameras)")
    offline_after_s: float = Field(default=10.0, gt=0, description="no frame for this long raises camera_offline")
    cooldown_s: float = Field(default=60.0, ge=0, description="a rule raises at most one incident per zone or line in this time")
    motion: MotionSettings = Field(default_factory=MotionSettings)
    objects: ObjectFilter = Field(default_factory=ObjectFilter)
    tracker: TrackerSettings = Field(default_factory=TrackerSettings)
    zones: list[CameraZone] = Field(default_factory=list, description="when empty, the whole frame is one zone with default rules")
    lines: list[Line] = Field(default_factory=list)
    tamper: TamperSettings = Field(default_factory=TamperSettings)
    evidence: EvidenceSettings = Field(default_factory=EvidenceSettings)

    def watched_zones(self) -> list[CameraZone]:
        """The configured zones, or the whole frame as one zone with the default rules."""
        return self.zones or [CameraZone(id="frame", polygon=[(0, 0), (1, 0), (1, 1), (0, 1)])]

    def schedules(self) -> Iterator[tuple[tuple, str]]:
        """(location in this camera's config, schedule id) of every rule that names a schedule."""
        for i, zone in enumerate(self.zones):
            for rule_name in ("intrusion", "loitering", "crowding"):
                rule = getattr(zone, rule_name)
                if rule is not None and rule.schedule is not None:
                    yield ("zones", i, rule_name, "schedule"), rule.schedule
        for i, line in enumerate(self.lines):
            if line.schedule is not None:
                yield ("lines", i, "schedule"), line.schedule


def camera_problems(camera: CameraSettings) -> Iterator[tuple[tuple, str]]:
    """Checks across a camera's entries: unique zone and line ids, objects filter bounds."""
    for kind, items in (("zone", camera.zones), ("line", camera.lines)):
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.id in seen:
                yield (f"{kind}s", i, "id"), f"camera {camera.id!r} has two {kind}s with id {item.id!r}"
            seen.add(item.id)
    if camera.objects.min_area >= camera.objects.max_area:
        yield ("objects", "min_area"), f"min_area {camera.objects.min_area} must be below max_area {camera.objects.max_area}"
    if camera.objects.min_aspect >= camera.objects.max_aspect:
        yield ("objects", "min_aspect"), f"min_aspect {camera.objects.min_aspect} must be below max_aspect {camera.objects.max_aspect}"
