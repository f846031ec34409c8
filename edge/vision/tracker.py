"""A multi-object tracker: detections are matched to tracks by the overlap of each track's predicted box, then by
distance; a constant-velocity motion model carries a track through short gaps; confirmed tracks get stable ids."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from guardlink.cameraconfig import TrackerSettings

MIN_IOU = 0.1  # predicted and detected boxes overlapping less than this are matched by distance, if at all
GATE = 1.5  # a detection further than this many track sizes from the prediction is someone else
SMOOTHING = 0.3  # weight of the prediction in the updated box: steadier bottom-centre points for zones and lines
VELOCITY_SMOOTHING = 0.6
SIZE_SMOOTHING = 0.8
COAST_DAMPING = 0.85  # per missed frame: a lost object is assumed to slow down rather than fly off
SPLIT_REACH = 0.5  # a new object this close to a tracked one (share of its size) split off from it
MOVED = 0.3  # of its height: how far an object must go from where it appeared to count as having moved


@dataclass(slots=True)
class Track:
    """An object followed across frames; `box` is (x, y, w, h) in detection pixels."""

    box: np.ndarray
    first_seen: float
    last_seen: float
    origin: tuple[float, float]  # bottom-centre where it was first detected
    centre: np.ndarray  # box centre when last matched
    size: np.ndarray  # typical (w, h): a detection of only part of the object does not shrink it
    id: int | None = None  # given once confirmed
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # of the box, pixels per second
    hits: int = 1
    missed_s: float = 0.0
    seen: bool = True  # matched to a detection in the latest frame
    moved: bool = False  # has gone somewhere since it appeared: a real object, not a ghost left in the background
    parent: int | None = None  # the confirmed track it split off from (people walking together, then apart)

    @property
    def foot(self) -> tuple[float, float]:
        """Bottom-centre of the box: where the object stands."""
        x, y, w, h = self.box
        return float(x + w / 2), float(y + h)


class Tracker:
    """Tracks of one camera; `update` once per frame with that frame's detections."""

    def __init__(self, settings: TrackerSettings) -> None:
        self.settings = settings
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, boxes: np.ndarray, t: float, dt: float) -> list[Track]:
        """Advance every track to time `t` with this frame's boxes; returns the confirmed tracks."""
        for track in self.tracks:
            track.box[:2] += track.velocity * dt
        detections = boxes.astype(np.float64)
        matched_tracks, matched_detections = self._match(detections)
        for ti, di in zip(matched_tracks, matched_detections):
            self._hit(self.tracks[ti], detections[di], t)
        unmatched = set(range(len(self.tracks))) - set(matched_tracks)
        survivors = []
        for i, track in enumerate(self.tracks):
            if i in unmatched:
                track.seen = False
                track.hits = 0
                track.missed_s += dt
                track.velocity *= COAST_DAMPING
                if track.id is None or track.missed_s > self.settings.max_missed_s:
                    continue
            survivors.append(track)
        new = set(range(len(detections))) - set(matched_detections)
        for di in sorted(new):
            box = detections[di].copy()
            parent = next((tr.id for tr in survivors if tr.id is not None and _touches(box, tr.box, SPLIT_REACH)), None)
            survivors.append(
                Track(
                    box=box, first_seen=t, last_seen=t, origin=(box[0] + box[2] / 2, box[1] + box[3]),
                    centre=box[:2] + box[2:] / 2, size=box[2:].copy(), parent=parent,
                )
            )
        self.tracks = survivors
        for track in self.tracks:
            if track.id is None and track.hits >= self.settings.min_hits:
                track.id = self._next_id
                self._next_id += 1
        return [track for track in self.tracks if track.id is not None]

    def _hit(self, track: Track, detection: np.ndarray, t: float) -> None:
        elapsed = max(t - track.last_seen, 1e-3)
        box = SMOOTHING * track.box + (1 - SMOOTHING) * detection
        centre = box[:2] + box[2:] / 2
        track.velocity = VELOCITY_SMOOTHING * track.velocity + (1 - VELOCITY_SMOOTHING) * (centre - track.centre) / elapsed
        track.box = box
        track.centre = centre
        track.size = SIZE_SMOOTHING * track.size + (1 - SIZE_SMOOTHING) * box[2:]
        foot = track.foot
        track.moved = track.moved or abs(foot[0] - track.origin[0]) + abs(foot[1] - track.origin[1]) >= MOVED * box[3]
        track.last_seen = t
        track.missed_s = 0.0
        track.hits += 1
        track.seen = True

    def _match(self, detections: np.ndarray) -> tuple[list[int], list[int]]:
        """Greedy one-to-one matching: best overlaps first, then nearest centres within the gate."""
        if not self.tracks or not len(detections):
            return [], []
        predicted = np.array([track.box for track in self.tracks])
        rows: list[int] = []
        cols: list[int] = []
        iou = _iou(predicted, detections)
        for ti, di in zip(*np.unravel_index(np.argsort(-iou, axis=None), iou.shape)):
            if iou[ti, di] < MIN_IOU:
                break
            if ti not in rows and di not in cols:
                rows.append(int(ti))
                cols.append(int(di))
        free_t = [i for i in range(len(predicted)) if i not in rows]
        free_d = [i for i in range(len(detections)) if i not in cols]
        if free_t and free_d:
            centres_t = predicted[free_t, :2] + predicted[free_t, 2:] / 2
            centres_d = detections[free_d, :2] + detections[free_d, 2:] / 2
            distance = np.linalg.norm(centres_t[:, None, :] - centres_d[None, :, :], axis=2)
            missed = np.array([self.tracks[i].missed_s for i in free_t])
            sizes = np.array([self.tracks[i].size.max() for i in free_t])
            reach = (GATE * sizes * (1 + missed))[:, None]  # a lost object may have gone further
            distance[distance > reach] = np.inf
            for a, b in zip(*np.unravel_index(np.argsort(distance, axis=None), distance.shape)):
                if not np.isfinite(distance[a, b]):
                    break
                ti, di = free_t[a], free_d[b]
                if ti not in rows and di not in cols:
                    rows.append(ti)
                    cols.append(di)
        return rows, cols


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in `a` with every box in `b` (x, y, w, h)."""
    ax0, ay0, ax1, ay1 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx0, by0, bx1, by1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    inter = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None) * np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    union = a[:, 2:3] * a[:, 3:4] + b[:, 2] * b[:, 3] - inter
    return inter / np.maximum(union, 1e-9)


def _touches(box: np.ndarray, other: np.ndarray, grow: float) -> bool:
    """Whether `box` overlaps `other` grown by `grow` of its size on every side."""
    ox, oy, ow, oh = other
    bx, by, bw, bh = box
    return bx < ox + (1 + grow) * ow and ox - grow * ow < bx + bw and by < oy + (1 + grow) * oh and oy - grow * oh < by + bh
