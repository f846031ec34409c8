"""Labelled synthetic camera scenes for tests and benchmarks, generated on the spot (no downloaded data).

A textured yard with sensor noise; people walking known paths (their true boxes are known for every frame);
lighting steps, a lightning flash, an IR-like switch to monochrome; a camera being covered by a hand-sized blob
that grows to fill the frame, defocused, or moved. Ground truth for zone entries and line crossings is computed
from the paths themselves. Conventions are those of the camera configuration: points are fractions of the
frame, a person is where their feet are (the bottom-centre of the box), side A of a line is on the left
walking from its first point to its second, as seen in the image.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

Point = tuple[float, float]
Box = tuple[float, float, float, float]
_NOISE_FIELDS = 5


@dataclass(frozen=True, slots=True)
class Walker:
    """A person walking through waypoints `(t, x, y)` of their feet, in a straight line between them."""

    waypoints: tuple[tuple[float, float, float], ...]
    size: tuple[float, float] = (0.045, 0.17)  # box width and height, fractions of the frame
    colour: tuple[int, int, int] = (60, 50, 170)  # BGR

    @property
    def start(self) -> float:
        return self.waypoints[0][0]

    @property
    def end(self) -> float:
        return self.waypoints[-1][0]

    def foot(self, t: float) -> Point | None:
        """Where the feet are at time t; None before the first waypoint and after the last."""
        if not self.start <= t <= self.end:
            return None
        for (t0, x0, y0), (t1, x1, y1) in zip(self.waypoints, self.waypoints[1:]):
            if t <= t1:
                f = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
                return x0 + (x1 - x0) * f, y0 + (y1 - y0) * f
        return self.waypoints[-1][1:]

    def box(self, t: float) -> Box | None:
        """The true box (x, y, w, h) at time t."""
        foot = self.foot(t)
        if foot is None:
            return None
        w, h = self.size
        return foot[0] - w / 2, foot[1] - h, w, h


@dataclass(slots=True)
class Scene:
    """A clip to render: size, rate, length, walkers and what happens to the camera."""

    width: int
    height: int
    fps: float
    duration_s: float
    walkers: list[Walker] = field(default_factory=list)
    seed: int = 1
    noise: float = 3.0  # sensor noise, standard deviation in grey levels
    lighting: list[tuple[float, float, float]] = field(default_factory=list)  # (from t, gain, offset)
    flashes: list[float] = field(default_factory=list)  # lightning: one bright frame at each time
    ir_at: float | None = None  # from then on: monochrome with an infrared-like tone curve
    cover_at: float | None = None  # a hand-sized blob grows from here over 1.5 s until the lens is covered
    defocus_at: float | None = None
    moved_at: float | None = None  # the view shifts as if the camera were knocked

    @property
    def frame_count(self) -> int:
        return round(self.duration_s * self.fps)

    def time(self, index: int) -> float:
        return index / self.fps

    def frames(self) -> Iterator[np.ndarray]:
        """Every frame, BGR; the same buffer is reused, copy what you keep."""
        rng = np.random.default_rng(self.seed)
        background = _background(self.width, self.height, rng)
        positive, negative = [], []
        for _ in range(_NOISE_FIELDS):
            noise = rng.normal(0, self.noise, (self.height, self.width, 1)).repeat(3, axis=2)
            positive.append(np.clip(noise, 0, 255).astype(np.uint8))
            negative.append(np.clip(-noise, 0, 255).astype(np.uint8))
        looks = [_look(rng, walker) for walker in self.walkers]
        frame = np.empty_like(background)
        ir_curve = (255 * (np.arange(256) / 255) ** 0.6 * 0.85 + 20).clip(0, 255).astype(np.uint8)
        for index in range(self.frame_count):
            t = self.time(index)
            np.copyto(frame, background)
            for walker, look in zip(self.walkers, looks):
                self._draw_person(frame, walker, look, t)
            if self.moved_at is not None and t >= self.moved_at:
                shift = np.float32([[1, 0, -0.15 * self.width], [0, 1, -0.08 * self.height]])
                frame[:] = cv2.warpAffine(frame, shift, (self.width, self.height), borderMode=cv2.BORDER_REFLECT)
            if self.defocus_at is not None and t >= self.defocus_at:
                cv2.GaussianBlur(frame, (0, 0), 0.008 * self.width, dst=frame)
            gain, offset = next(((g, o) for start, g, o in reversed(self.lighting) if t >= start), (1.0, 0.0))
            if any(abs(t - flash) < 0.5 / self.fps for flash in self.flashes):
                gain, offset = gain * 1.6, offset + 60
            if (gain, offset) != (1.0, 0.0):
                cv2.convertScaleAbs(frame, dst=frame, alpha=gain, beta=offset)
            if self.ir_at is not None and t >= self.ir_at:
                grey = cv2.LUT(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), ir_curve)
                cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR, dst=frame)
            if self.cover_at is not None and t >= self.cover_at:
                grown = min(1.0, (t - self.cover_at) / 1.5)
                radius = int((0.08 + 1.3 * grown) * max(self.width, self.height))
                cv2.circle(frame, (int(0.3 * self.width), self.height), radius, (45, 55, 75), -1, cv2.LINE_AA)
            k = index % _NOISE_FIELDS
            cv2.add(frame, positive[k], dst=frame)
            cv2.subtract(frame, negative[k], dst=frame)
            yield frame

    def _draw_person(self, frame: np.ndarray, walker: Walker, look: tuple, t: float) -> None:
        box = walker.box(t)
        if box is None:
            return
        x, y, w, h = (box[0] * self.width, box[1] * self.height, box[2] * self.width, box[3] * self.height)
        body, head, legs = look
        cx = x + w / 2
        cv2.ellipse(frame, (int(cx), int(y + h * 0.45)), (int(w / 2), int(h * 0.3)), 0, 0, 360, body, -1, cv2.LINE_AA)
        cv2.circle(frame, (int(cx), int(y + h * 0.1)), max(1, int(min(w / 2, h * 0.1))), head, -1, cv2.LINE_AA)
        stride = np.sin(t * 6.0) * w * 0.2  # legs swing as they walk
        for side in (-1, 1):
            top = (int(cx + side * w * 0.2), int(y + h * 0.7))
            cv2.line(frame, top, (int(cx + side * (w * 0.25 + stride)), int(y + h)), legs, max(1, int(w * 0.25)), cv2.LINE_AA)

    def truth(self, t: float) -> list[tuple[int, Box]]:
        """(walker index, true box) of every person in the frame at time t."""
        return [(i, box) for i, walker in enumerate(self.walkers) if (box := walker.box(t)) is not None and _visible(box)]

    def write(self, path: Path, bitrate: str | None = None, keyframe_s: float = 2.0) -> Path:
        """Encode the scene as an H.264 MP4 with ffmpeg: constant quality, or a camera-like constant `bitrate` ('4M')."""
        rate = ["-b:v", bitrate, "-maxrate", bitrate, "-bufsize", bitrate] if bitrate else ["-crf", "20"]
        # x264's output depends on its thread count: a fixed one makes the same clip on every machine.
        command = [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
            "-s", f"{self.width}x{self.height}", "-r", f"{self.fps}", "-i", "-",
            "-c:v", "libx264", "-preset", "veryfast", "-threads", "2", *rate, "-g", str(int(self.fps * keyframe_s)),
            "-pix_fmt", "yuv420p", str(path),
        ]
        with subprocess.Popen(command, stdin=subprocess.PIPE) as encoder:
            for frame in self.frames():
                encoder.stdin.write(frame.data)
            encoder.stdin.close()
            if encoder.wait() != 0:
                raise RuntimeError(f"ffmpeg could not encode {path}")
        return path

    def zone_stays(self, polygon: list[Point]) -> list[tuple[int, float, float, float]]:
        """(walker, entered, left, deepest) of every stay in the polygon, sampled at frame times.

        `deepest` is how far inside the feet got (fractions of the frame): a path that grazes a corner is a
        stay no detector should be held to.
        """
        shape = np.asarray(polygon, np.float32).reshape(-1, 1, 2)
        stays = []
        for i, walker in enumerate(self.walkers):
            entered, deepest = None, 0.0
            for index in range(self.frame_count + 1):
                foot = walker.foot(self.time(index)) if index < self.frame_count else None
                depth = cv2.pointPolygonTest(shape, foot, True) if foot is not None else -1.0
                if depth >= 0 and entered is None:
                    entered, deepest = self.time(index), depth
                elif depth >= 0:
                    deepest = max(deepest, depth)
                elif entered is not None:
                    stays.append((i, entered, self.time(index), deepest))
                    entered = None
        return stays

    def line_crossings(self, a: Point, b: Point) -> list[tuple[int, float, str, float]]:
        """(walker, time, 'a_to_b' or 'b_to_a', where) of every crossing of segment a-b by a walker's feet.

        `where` is the fraction along a-b at which it was crossed: near 0 or 1 is a crossing at a line's end.
        """
        crossings = []
        for i, walker in enumerate(self.walkers):
            for (t0, *p), (t1, *q) in zip(walker.waypoints, walker.waypoints[1:]):
                hit = _segment_intersection(tuple(p), tuple(q), a, b)
                if hit is None:
                    continue
                f, side_before, along = hit
                crossings.append((i, t0 + (t1 - t0) * f, "a_to_b" if side_before < 0 else "b_to_a", along))
        return sorted(crossings, key=lambda c: c[1])


def score(
    found: list[tuple[object, float]], clear: list[tuple[object, float]], marginal: list[tuple[object, float]], tolerance_s: float
) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of found events against the clear truth.

    A found event matches one truth event with an equal key within tolerance_s, one to one. Found events that
    match a marginal truth event (a graze, a crossing at a line's very end) count neither way.
    """
    unused, spare = list(clear), list(marginal)
    hits = misses = 0
    for key, t in sorted(found, key=lambda e: e[1]):
        for pool in (unused, spare):
            best = min((e for e in pool if e[0] == key and abs(e[1] - t) <= tolerance_s), key=lambda e: abs(e[1] - t), default=None)
            if best is not None:
                pool.remove(best)
                hits += pool is unused
                break
        else:
            misses += 1
    return hits, misses, len(unused)


def precision_recall(tp: int, fp: int, fn: int) -> tuple[float, float]:
    """Precision and recall (1.0 when there is nothing to be wrong about)."""
    return (tp / (tp + fp) if tp + fp else 1.0), (tp / (tp + fn) if tp + fn else 1.0)


YARD_ZONE: list[Point] = [(0.35, 0.45), (0.75, 0.45), (0.85, 0.95), (0.25, 0.95)]
YARD_LINE: list[Point] = [(0.15, 0.3), (0.15, 0.95)]  # side A is right of it (x > 0.15), side B left
PALETTE = [(60, 50, 170), (170, 90, 40), (40, 160, 60), (30, 30, 30), (200, 200, 210), (90, 60, 150), (40, 120, 200), (120, 40, 40), (180, 60, 160)]


def yard_walkers(duration_s: float, seed: int) -> list[Walker]:
    """People crossing a yard in turn: through its zone, across its fence line either way, or past both."""
    rng = np.random.default_rng(seed)
    walkers: list[Walker] = []
    t = 0.5

    def u(lo: float, hi: float) -> float:
        return float(rng.uniform(lo, hi))

    while t < duration_s - 10:
        kind = (0, 1, 0, 3, 2)[len(walkers) % 5]  # as many entries into the zone as crossings of the fence
        if kind == 0:  # from the right edge into the zone, out at the bottom or back right
            path = [(0.98, u(0.5, 0.9)), (u(0.45, 0.65), u(0.6, 0.85)), (u(0.4, 0.95), 0.995) if rng.random() < 0.5 else (0.98, u(0.5, 0.9))]
        elif kind == 1:  # over the fence from the left, then away up the left side
            path = [(0.01, u(0.45, 0.8)), (u(0.19, 0.23), u(0.45, 0.8)), (u(0.22, 0.28), 0.36), (u(0.25, 0.3), 0.0)]
        elif kind == 2:  # along the top, past the zone, out at the top
            path = [(0.98, u(0.34, 0.4)), (u(0.3, 0.4), u(0.33, 0.38)), (u(0.3, 0.4), 0.0)]
        else:  # out over the fence to the left, from the bottom
            path = [(u(0.17, 0.21), 0.995), (u(0.17, 0.21), u(0.6, 0.8)), (0.01, u(0.45, 0.85))]
        speed = u(0.07, 0.1)  # frame widths per second: a walk across a yard
        waypoints, at = [], t
        for k, (x, y) in enumerate(path):
            if k:
                at += float(np.hypot(x - path[k - 1][0], y - path[k - 1][1])) / speed
            waypoints.append((at, x, y))
        walkers.append(Walker(tuple(waypoints), colour=PALETTE[len(walkers) % len(PALETTE)]))
        t += u(2.0, 4.0)
    return walkers


def _segment_intersection(p: Point, q: Point, a: Point, b: Point) -> tuple[float, float, float] | None:
    """Where p->q crosses a-b: (fraction along p->q, side of p: negative is side A, fraction along a-b); None if not."""

    def cross(o: Point, u: Point, v: Point) -> float:
        return (u[0] - o[0]) * (v[1] - o[1]) - (u[1] - o[1]) * (v[0] - o[0])

    dp, dq = cross(a, b, p), cross(a, b, q)
    if dp * dq >= 0:
        return None
    da, db = cross(p, q, a), cross(p, q, b)
    if da * db > 0:
        return None
    return dp / (dp - dq), dp, da / (da - db)


def _visible(box: Box) -> bool:
    x, y, w, h = box
    return x + w > 0 and y + h > 0 and x < 1 and y < 1


def _look(rng: np.random.Generator, walker: Walker) -> tuple:
    body = tuple(int(c) for c in walker.colour)
    head = (int(rng.integers(60, 110)), int(rng.integers(90, 140)), int(rng.integers(150, 200)))
    legs = tuple(int(c) for c in np.clip(np.asarray(walker.colour) * 0.5 + 10, 0, 255))
    return body, head, legs


def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A yard: smooth colour variation, paving texture, a few buildings with windows, fine grain."""
    coarse = rng.integers(70, 170, (height // 40 + 2, width // 40 + 2, 3)).astype(np.uint8)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    texture = cv2.resize(rng.normal(0, 14, (height // 6 + 1, width // 6 + 1)).astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    image += texture[..., None]
    image += rng.normal(0, 5, (height, width))[..., None].astype(np.float32)
    for _ in range(6):
        x0, y0 = int(rng.uniform(0, 0.85) * width), int(rng.uniform(0, 0.3) * height)
        w, h = int(rng.uniform(0.08, 0.2) * width), int(rng.uniform(0.1, 0.25) * height)
        colour = [float(c) for c in rng.integers(50, 210, 3)]
        cv2.rectangle(image, (x0, y0), (x0 + w, y0 + h), colour, -1)
        for wx in range(x0 + w // 8, x0 + w - w // 8, max(4, w // 5)):
            cv2.rectangle(image, (wx, y0 + h // 4), (wx + max(2, w // 12), y0 + h // 2), [c * 0.4 for c in colour], -1)
    for k in range(1, 12):  # paving joints
        y = int(height * (0.35 + 0.06 * k))
        cv2.line(image, (0, y), (width, y), (90, 90, 95), max(1, height // 300))
    return np.clip(image, 0, 255).astype(np.uint8)
