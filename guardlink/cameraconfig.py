"""Camera configuration: source, motion detection, object filters, tracker, zones, lines, rules, tamper, evidence.

Image coordinates are fractions of the frame, `[x, y]` with `[0, 0]` the top-left corner and `[1, 1]` the
bottom-right, so a configuration survives a change of stream resolution. A rule may name a site schedule
that arms it ("after 22:00"); a rule without one is always armed. A camera file for `guardlink vision
analyze` holds one camera as it would appear under a site's `cameras:`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from guardlink.yamlconfig import (
    ID_PATTERN,
    ConfigError,
    at,
    compose,
    node_at,
    read_text,
    validation_errors,
)

Point = tuple[float, float]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _fractions(points: list[Point]) -> list[Point]:
    for x, y in points:
        if not (0 <= x <= 1 and 0 <= y <= 1):
            raise ValueError(f"point [{x}, {y}] is outside the frame; coordinates are fractions of the frame, 0 to 1")
    return points


class MotionSettings(_Model):
    """The motion core: a running-average background of the luma plane at a small detection size."""

    frame_height: int = Field(default=90, ge=36, le=360, description="rows of the detection image; the width follows the aspect ratio")
    threshold: int = Field(default=15, ge=1, le=255, description="luma difference from the background that counts as motion")
    background_s: float = Field(default=4.0, gt=0, description="time constant of the background where nothing moves")
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

    @model_validator(mode="after")
    def _ordered(self) -> ObjectFilter:
        if self.min_area >= self.max_area or self.min_aspect >= self.max_aspect:
            raise ValueError("min_area must be below max_area and min_aspect below max_aspect")
        return self


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

    before_s: float = Field(
        default=30.0, ge=0, le=120,
        description="seconds of clip before the event (the ring keeps them): one-touch alarms must carry the 30 s before the alarm (DB15/T 3968-2025)",
    )
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
    listen: bool = Field(
        default=False, description="rtsp:// sources: wait for the camera to push its stream to this address (RTSP ANNOUNCE/RECORD) instead of pulling it"
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

    @model_validator(mode="after")
    def _listen_needs_rtsp(self) -> CameraSettings:
        if self.listen and self.source is not None and not self.source.startswith(("rtsp://", "rtsps://")):
            raise ValueError(f"listen applies to rtsp:// sources, not {self.source!r}")
        return self

    def watched_zones(self) -> list[CameraZone]:
        """The configured zones, or the whole frame as one zone with the default rules."""
        return self.zones or [CameraZone(id="frame", polygon=[(0, 0), (1, 0), (1, 1), (0, 1)])]



def camera_references(camera: dict[str, Any], zones: Collection[str] | None = None, schedules: Collection[str] | None = None) -> Iterator[tuple[tuple, str]]:
    """Checks across a camera's entries, on the raw data: unique zone and line ids, and, when the site's
    `zones` and `schedules` are given, that the site zones and schedules its zones, lines and rules name exist."""

    def entries(key: str) -> list[tuple[int, dict[str, Any]]]:
        value = camera.get(key)
        return [(i, e) for i, e in enumerate(value) if isinstance(e, dict)] if isinstance(value, list) else []

    name = camera.get("id")
    for key, kind in (("zones", "zone"), ("lines", "line")):
        seen: set[object] = set()
        for i, entry in entries(key):
            if entry.get("id") in seen:
                yield (key, i, "id"), f"camera {name!r} has two {kind}s with id {entry.get('id')!r}"
            seen.add(entry.get("id"))
        for i, entry in entries(key):
            site_zone = entry.get("site_zone")
            if zones is not None and site_zone is not None and site_zone not in zones:
                yield (key, i, "site_zone"), f"camera {name!r} {kind} {entry.get('id')!r} refers to zone {site_zone!r}, which is not defined (defined: {', '.join(zones) or 'none'})"
            rules = [((rule,), entry.get(rule)) for rule in ("intrusion", "loitering", "crowding")] if key == "zones" else [((), entry)]
            for where, rule in rules:
                schedule = rule.get("schedule") if isinstance(rule, dict) else None
                if schedules is not None and schedule is not None and schedule not in schedules:
                    yield (key, i, *where, "schedule"), (
                        f"camera {name!r} {kind} {entry.get('id')!r} refers to schedule {schedule!r}, which is not defined (defined: {', '.join(schedules) or 'none'})"
                    )


def load_camera(path: Path, default_id: str = "camera") -> CameraSettings:
    """A camera file; ConfigError lists every problem as file:line:col. `default_id` names a camera without `id`."""
    filename = str(path)
    root, data, errors = compose(read_text(path, "camera file"), filename, "a camera needs at least zones or lines to watch", "a camera file is a mapping with 'zones', 'lines', 'motion' ...")
    data.setdefault("id", default_id)
    errors += [f"{at(filename, node_at(root, loc)[0])}: {message}" for loc, message in camera_references(data)]
    try:
        camera = CameraSettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_errors(exc, root, filename) + errors) from None
    if errors:
        raise ConfigError(errors)
    return camera
