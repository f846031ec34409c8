"""What the camera pipeline reports: one event per rule firing, per tamper or offline change."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class CameraEventKind(StrEnum):
    """Closed set of camera events."""

    INTRUSION = "intrusion"  # an object entered a zone (and stayed the rule's time)
    LOITERING = "loitering"  # an object stayed in a zone longer than the rule's time
    LINE_CROSSING = "line_crossing"  # an object crossed a line in a counted direction
    CROWDING = "crowding"  # more objects in a zone than the rule allows
    TAMPER = "camera_tamper"  # covered, defocused or moved
    TAMPER_CLEARED = "camera_tamper_cleared"
    OFFLINE = "camera_offline"  # no frames for the camera's offline_after_s
    ONLINE = "camera_online"  # frames again after camera_offline


@dataclass(frozen=True, slots=True)
class CameraEvent:
    """One event; `box` is (x, y, w, h) in fractions of the frame, `time` the frame's time in seconds.

    `time` is the position in the video for files and epoch seconds for live cameras.
    """

    kind: CameraEventKind
    camera: str
    time: float
    frame: int | None = None
    zone: str | None = None
    line: str | None = None
    track: int | None = None
    box: tuple[float, float, float, float] | None = None
    direction: str | None = None  # line crossings: a_to_b or b_to_a
    count: int | None = None  # crowding: objects in the zone
    dwell_s: float | None = None  # intrusion, loitering: time in the zone so far
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping with every key present (null when it does not apply)."""
        data = asdict(self)
        data["kind"] = self.kind.value
        data["time"] = round(self.time, 3)
        if self.box is not None:
            data["box"] = [round(v, 4) for v in self.box]
        if self.dwell_s is not None:
            data["dwell_s"] = round(self.dwell_s, 2)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CameraEvent:
        """The event of a `to_dict` mapping."""
        box = data.get("box")
        return cls(**{**data, "kind": CameraEventKind(data["kind"]), "box": tuple(box) if box is not None else None})
