"""A multi-object tracker: detections are matched to tracks by the overlap of each track's predicted box, then by
distance; a constant-velocity motion model carries a track through short gaps; confirmed tracks get stable ids.

Plain Python floats: a camera has a handful of objects, and numpy's per-call cost would dominate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from guardlink.cameraconfig import TrackerSettings

Box = tuple[float, float, float, float]  # x, y, w, h in detection pixels

MIN_IOU = 0.1  # predicted and detected boxes overlapping less than this are matched by distance, if at all
GATE = 1.5  # a detection further than this many object sizes from the prediction is someone else
SMOOTHING = 0.3  # weight of the prediction in the updated box: steadier bottom-centre points for zones and lines
VELOCITY_SMOOTHING = 0.6
SIZE_SMOOTHING = 0.8
COAST_DAMPING = 0.85  # per missed frame: a lost object is assumed to slow down rather than fly off
GROUP_AREA = 1.5  # a blob this many times an object's usual area, holding it and another, is the two of them
SPLIT_REACH = 0.5  # a new object this close to a tracked one (share of its size) split off from it
MOVED = 0.3  # of its height: how far an object must go from where it appeared to count as having moved


@dataclass(slots=True)
class Track:
    """An object followed across frames."""

    box: Box
    first_seen: float
    last_seen: float
    origin: tuple[float, float]  # bottom-centre where it was first detected
    centre: tuple[float, float]  # box centre when last matched
    size: tuple[float, float]  # typical (w, h): a detection of only part of the object does not shrink it
    id: int | None = None  # given once confirmed
    velocity: tuple[float, float] = (0.0, 0.0)  # of the box, pixels per second
    hits: int = 1
    missed_s: float = 0.0
    seen: bool = True  # matched to a detection in the latest frame
    moved: bool = False  # has gone somewhere since it appeared: a real object, not a ghost left in the background
    parent: int | None = None  # the confirmed track it split off from (people walking together, then apart)

    @property
    def foot(self) -> tuple[float, float]:
        """Bottom-centre of the box: where the object stands."""
        x, y, w, h = self.box
        return x + w / 2, y + h


class Tracker:
    """Tracks of one camera; `update` once per frame with that frame's detections."""

    def __init__(self, settings: TrackerSettings) -> None:
        self.settings = settings
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, detections: Sequence[Box], t: float, dt: float) -> list[Track]:
        """Advance every track to time `t` with this frame's boxes; returns the confirmed tracks."""
        for track in self.tracks:
            x, y, w, h = track.box
            track.box = (x + track.velocity[0] * dt, y + track.velocity[1] * dt, w, h)
        grouped, merged = self._groups(detections)
        pairs = self._match(detections, grouped, merged)
        for ti, di in pairs:
            self._hit(self.tracks[ti], detections[di], t)
        for ti in grouped:  # hidden in a group: it keeps its predicted box (slowing down) and its place in zones
            track = self.tracks[ti]
            track.seen = False
            track.velocity = (track.velocity[0] * COAST_DAMPING, track.velocity[1] * COAST_DAMPING)
        matched_tracks = {ti for ti, _ in pairs} | grouped
        survivors = []
        for i, track in enumerate(self.tracks):
            if i not in matched_tracks:
                track.seen = False
                track.hits = 0
                track.missed_s += dt
                track.velocity = (track.velocity[0] * COAST_DAMPING, track.velocity[1] * COAST_DAMPING)
                if track.id is None or track.missed_s > self.settings.max_missed_s:
                    continue
            survivors.append(track)
        matched_detections = {di for _, di in pairs} | merged
        for di, box in enumerate(detections):
            if di in matched_detections:
                continue
            x, y, w, h = box = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
            parent = next((tr for tr in survivors if tr.id is not None and touches(box, tr.box, SPLIT_REACH)), None)
            survivors.append(
                Track(
                    box=box, first_seen=t, last_seen=t, origin=(x + w / 2, y + h), centre=(x + w / 2, y + h / 2), size=(w, h),
                    parent=parent.id if parent else None, moved=parent.moved if parent else False,
                )
            )
        self.tracks = survivors
        for track in self.tracks:
            if track.id is None and track.hits >= self.settings.min_hits:
                track.id = self._next_id
                self._next_id += 1
        return [track for track in self.tracks if track.id is not None]

    def _hit(self, track: Track, detection: Box, t: float) -> None:
        elapsed = max(t - track.last_seen, 1e-3)
        x, y, w, h = (SMOOTHING * p + (1 - SMOOTHING) * d for p, d in zip(track.box, detection))
        cx, cy = x + w / 2, y + h / 2
        (vx, vy), (px, py) = track.velocity, track.centre
        track.velocity = (
            VELOCITY_SMOOTHING * vx + (1 - VELOCITY_SMOOTHING) * (cx - px) / elapsed,
            VELOCITY_SMOOTHING * vy + (1 - VELOCITY_SMOOTHING) * (cy - py) / elapsed,
        )
        track.box, track.centre = (x, y, w, h), (cx, cy)
        track.size = (SIZE_SMOOTHING * track.size[0] + (1 - SIZE_SMOOTHING) * w, SIZE_SMOOTHING * track.size[1] + (1 - SIZE_SMOOTHING) * h)
        track.last_seen, track.missed_s, track.seen = t, 0.0, True
        track.hits += 1
        if not track.moved:
            ox, oy = track.origin
            track.moved = abs(cx - ox) + abs(y + h - oy) >= MOVED * h

    def _groups(self, detections: Sequence[Box]) -> tuple[set[int], set[int]]:
        """Detections that are two or more tracked objects merged into one blob (people passing close), and those
        tracks: (track indices, detection indices)."""
        grouped: set[int] = set()
        merged: set[int] = set()
        for di, (x, y, w, h) in enumerate(detections):
            inside = [
                ti for ti, track in enumerate(self.tracks)
                if track.id is not None and x <= track.box[0] + track.box[2] / 2 <= x + w and y <= track.box[1] + track.box[3] / 2 <= y + h
                and w * h >= GROUP_AREA * track.size[0] * track.size[1]
            ]
            if len(inside) >= 2:
                grouped.update(inside)
                merged.add(di)
        return grouped, merged

    def _match(self, detections: Sequence[Box], grouped: set[int], merged: set[int]) -> list[tuple[int, int]]:
        """Greedy one-to-one matching: best overlaps first, then nearest centres within the gate."""
        if not self.tracks or not detections:
            return []
        candidates = sorted(
            (
                (iou, ti, di) for ti, track in enumerate(self.tracks) for di, box in enumerate(detections)
                if ti not in grouped and di not in merged and (iou := _iou(track.box, box)) >= MIN_IOU
            ),
            reverse=True,
        )
        pairs: list[tuple[int, int]] = []
        used_t: set[int] = set(grouped)
        used_d: set[int] = set(merged)
        for _, ti, di in candidates:
            if ti not in used_t and di not in used_d:
                pairs.append((ti, di))
                used_t.add(ti)
                used_d.add(di)
        nearby = []
        for ti, track in enumerate(self.tracks):
            if ti in used_t:
                continue
            reach = GATE * max(track.size) * (1 + track.missed_s)  # a lost object may have gone further
            tx, ty = track.box[0] + track.box[2] / 2, track.box[1] + track.box[3] / 2
            for di, (x, y, w, h) in enumerate(detections):
                if di not in used_d and (distance := math.hypot(x + w / 2 - tx, y + h / 2 - ty)) <= reach:
                    nearby.append((distance, ti, di))
        for _, ti, di in sorted(nearby):
            if ti not in used_t and di not in used_d:
                pairs.append((ti, di))
                used_t.add(ti)
                used_d.add(di)
        return pairs


def _iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (x, y, w, h)."""
    (ax, ay, aw, ah), (bx, by, bw, bh) = a, b
    iw = min(ax + aw, bx + bw) - max(ax, bx)
    ih = min(ay + ah, by + bh) - max(ay, by)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / (aw * ah + bw * bh - inter)


def touches(box: Box, other: Box, grow: float) -> bool:
    """Whether `box` overlaps `other` grown by `grow` of its size on every side."""
    (bx, by, bw, bh), (ox, oy, ow, oh) = box, other
    return bx < ox + (1 + grow) * ow and ox - grow * ow < bx + bw and by < oy + (1 + grow) * oh and oy - grow * oh < by + bh
