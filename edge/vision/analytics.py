"""Zone and line analytics over tracks: intrusion, loitering, crowding and line crossing. Pure state, time passed in.

An object is where it stands: the bottom-centre of its box. It is in a zone after `inertia` consecutive frames
inside and out after as many outside, so a box edge flickering on a zone border is not a string of entries. A
track that coasts (not detected in this frame) keeps its zone state and line side. Only tracks that have moved
since they appeared count: a blob that never moves is a ghost or a lighting residue, not someone who walked in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from edge.vision.events import CameraEvent, CameraEventKind
from edge.vision.tracker import SPLIT_REACH, Track, touches
from edge.vision.zones import Point, Tripwire, ZoneShape
from guardlink.cameraconfig import CameraSettings, CameraZone, Line

LINE_MARGIN = 0.015  # share of the frame height: a foot this close to a line keeps its side (jitter is no crossing)


@dataclass(slots=True)
class _Presence:
    """One track in one zone."""

    inside: int = 0  # consecutive frames inside
    outside: int = 0
    run_start: float = 0.0
    present: bool = False
    since: float = 0.0  # when the present stay began
    intruded: bool = False
    loitered: bool = False


@dataclass(slots=True)
class _Crowd:
    above_since: float | None = None
    fired: bool = False


class Analytics:
    """The rules of one camera's zones and lines, fed the confirmed tracks of every frame."""

    def __init__(self, camera: CameraSettings, size: tuple[int, int]) -> None:
        self.camera = camera.id
        self.size = size
        self.zones = [(zone, ZoneShape(zone.polygon, size)) for zone in camera.watched_zones()]
        self.lines = [(line, Tripwire(line.points, size)) for line in camera.lines]
        self.margin = LINE_MARGIN * size[1]
        self._presence: dict[tuple[int | None, str], _Presence] = {}  # by (track id, zone)
        self._sides: dict[tuple[int | None, str], tuple[int, Point]] = {}  # by (track id, line)
        self._crowds = {zone.id: _Crowd() for zone, _ in self.zones if zone.crowding is not None}
        self._known: set[int | None] = set()

    def update(self, tracks: list[Track], t: float, frame: int) -> list[CameraEvent]:
        """Events fired by this frame's tracks."""
        events: list[CameraEvent] = []
        boxes = {track.id: track.box for track in tracks}
        for track in tracks:
            # A blob that never moved is a ghost or a lighting residue, not someone who walked in; a piece that split
            # off a tracked object and still touches it is part of it (a person in two halves), not someone else.
            if not track.seen or not track.moved or (track.parent in boxes and touches(track.box, boxes[track.parent], SPLIT_REACH)):
                continue
            if track.id not in self._known:
                self._known.add(track.id)
                if track.parent is not None:
                    self._inherit(track.id, track.parent)
            foot = track.foot
            for zone, shape in self.zones:
                events += self._zone(track, zone, shape.contains(foot), t, frame)
            for line, wire in self.lines:
                event = self._line(track, line, wire, foot, t, frame)
                if event is not None:
                    events.append(event)
        live = {track.id for track in tracks}
        for zone, _ in self.zones:
            if zone.crowding is not None:
                count = len([tid for tid in live if (p := self._presence.get((tid, zone.id))) is not None and p.present])
                event = self._crowding(zone, count, t, frame)
                if event is not None:
                    events.append(event)
        for key in [k for k in self._presence if k[0] not in live]:
            del self._presence[key]
        for key in [k for k in self._sides if k[0] not in live]:
            del self._sides[key]
        self._known &= live
        return events

    def _inherit(self, child: int | None, parent: int) -> None:
        """A track that split off another (two people walking together, then apart) has been where the other was."""
        for (tid, zone), presence in list(self._presence.items()):
            if tid == parent:
                self._presence[(child, zone)] = replace(presence)
        for (tid, line), side in list(self._sides.items()):
            if tid == parent:
                self._sides[(child, line)] = side

    def _event(self, kind: CameraEventKind, t: float, frame: int, track: Track | None = None, **fields: Any) -> CameraEvent:
        box = None
        if track is not None:
            x, y, w, h = track.box
            width, height = self.size
            box = (max(0.0, x / width), max(0.0, y / height), w / width, h / height)
        return CameraEvent(kind, self.camera, t, frame, track=track.id if track else None, box=box, **fields)

    def _zone(self, track: Track, zone: CameraZone, inside: bool, t: float, frame: int) -> list[CameraEvent]:
        p = self._presence.setdefault((track.id, zone.id), _Presence())
        if inside:
            if p.inside == 0:
                p.run_start = t
            p.inside += 1
            p.outside = 0
            if not p.present and p.inside >= zone.inertia:
                p.present, p.since = True, p.run_start
        else:
            p.outside += 1
            p.inside = 0
            if p.present and p.outside >= zone.inertia:
                p.present = p.intruded = p.loitered = False
        if not p.present:
            return []
        events = []
        dwell = t - p.since
        if zone.intrusion is not None and not p.intruded and dwell >= zone.intrusion.after_s:
            p.intruded = True
            events.append(self._event(CameraEventKind.INTRUSION, t, frame, track, zone=zone.id, dwell_s=dwell))
        if zone.loitering is not None and not p.loitered and dwell >= zone.loitering.after_s:
            p.loitered = True
            events.append(self._event(CameraEventKind.LOITERING, t, frame, track, zone=zone.id, dwell_s=dwell))
        return events

    def _side(self, wire: Tripwire, point: Point) -> int:
        distance = wire.distance(point)
        return -1 if distance < -self.margin else 1 if distance > self.margin else 0

    def _line(self, track: Track, line: Line, wire: Tripwire, foot: Point, t: float, frame: int) -> CameraEvent | None:
        key = (track.id, line.id)
        side = self._side(wire, foot)
        known = self._sides.get(key)
        if known is None:
            # A track is confirmed a few frames after it appeared: start from where it was first seen.
            born = self._side(wire, track.origin)
            if born == 0:
                if side != 0:
                    self._sides[key] = (side, foot)
                return None
            known = (born, track.origin)
        if side == 0:
            self._sides[key] = known
            return None
        self._sides[key] = (side, foot)
        if side == known[0] or not wire.crossed_within(known[1], foot, self.margin * 2):
            return None
        direction = "a_to_b" if known[0] < 0 else "b_to_a"
        if line.direction not in (direction, "both"):
            return None
        return self._event(CameraEventKind.LINE_CROSSING, t, frame, track, line=line.id, direction=direction)

    def _crowding(self, zone: CameraZone, count: int, t: float, frame: int) -> CameraEvent | None:
        rule, crowd = zone.crowding, self._crowds[zone.id]
        assert rule is not None  # asked only for zones with a crowding rule
        if count <= rule.max_objects:
            crowd.above_since, crowd.fired = None, False
            return None
        if crowd.above_since is None:
            crowd.above_since = t
        if crowd.fired or t - crowd.above_since < rule.after_s:
            return None
        crowd.fired = True
        return self._event(CameraEventKind.CROWDING, t, frame, zone=zone.id, count=count)
