"""The motion core: moving regions of a luma frame against a running-average background at a small detection size.

Every step runs in OpenCV on buffers allocated once per camera (no per-pixel Python, no per-frame images):
downscale (rows skipped, then an area average over whole pixel blocks), 3x3 blur, absolute difference to the
background, threshold, static mask, dilate, outer contours and their boxes, then a size and aspect
filter on the handful of boxes. The background learns quickly everywhere except under the objects the tracker
says are real (tracked, and moved since they appeared): there it learns slowly, so a person who stops stays
visible (loitering), while noise, slow light changes and ghosts (what a departed object leaves behind: it never
moves) are absorbed within seconds.

A change over a large share of the frame at once is lighting (lights switched, IR mode, lightning). A change
that lasts one frame (a flash) is skipped. One that lasts is absorbed by mapping the background through the
tone curve between it and the new frame, which keeps real objects visible and leaves no ghost; when no tone
curve explains the change (the camera was moved or covered) the background is relearnt.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations

import cv2
import numpy as np

from guardlink.cameraconfig import MotionSettings, ObjectFilter

Box = tuple[int, int, int, int]  # x, y, w, h in detection pixels
MAX_JOINED = 32  # more blobs than this is a noise storm: not worth joining parts
LIGHTING_SHARE = 0.1  # a change over this share of the frame is checked for being lighting
LIGHTING_FRAMES = 2  # a global change must last this many frames to be absorbed; shorter is a flash, skipped
LEARNING_S = 0.25  # time constant of the background while it is being learnt
_TONE_BINS = 16


def detection_size(width: int, height: int, rows: int) -> tuple[int, int]:
    """(width, height) of the detection image for a source frame: `rows` high, same aspect ratio."""
    return max(1, round(width * rows / height)), rows


class Downscaler:
    """Reduces luma frames of one size to another: integer skip of rows, area average over whole blocks, then a final touch-up."""

    def __init__(self, source: tuple[int, int], target: tuple[int, int]) -> None:
        (width, height), (self.width, self.height) = source, target
        self.factor = max(1, height // self.height)
        # Average at least three rows of each block: skipping the others costs little noise and most of the time.
        self.row_step = next(d for d in range(max(1, self.factor // 3), 0, -1) if self.factor % d == 0)
        self.block = (width // self.factor, height // self.factor)
        self.out = np.empty((self.height, self.width), np.uint8)
        self._blocks = self.out if self.block == target else np.empty((self.block[1], self.block[0]), np.uint8)

    def __call__(self, luma: np.ndarray) -> np.ndarray:
        """The frame at the target size (the input itself when it has that size, else a buffer reused on every call)."""
        if luma.shape == self.out.shape:
            return luma
        blocks = luma
        if self.factor > 1:
            width, height = self.block
            rows = luma[: height * self.factor : self.row_step, : width * self.factor]
            blocks = cv2.resize(rows, self.block, dst=self._blocks, interpolation=cv2.INTER_AREA)
        if blocks.shape == self.out.shape:
            return blocks
        return cv2.resize(blocks, (self.width, self.height), dst=self.out, interpolation=cv2.INTER_AREA)


class MotionDetector:
    """Boxes of moving objects in successive luma frames of one camera (x, y, w, h at detection size)."""

    def __init__(self, settings: MotionSettings, objects: ObjectFilter, source: tuple[int, int]) -> None:
        self.settings = settings
        self.objects = objects
        self.size = detection_size(*source, settings.frame_height)
        self.downscale = Downscaler(source, self.size)
        width, height = self.size
        shape = (height, width)
        self.area = width * height
        self.small = np.zeros(shape, np.uint8)  # the latest frame at detection size, before the blur
        self.blurred = np.empty(shape, np.uint8)
        self.background = np.empty(shape, np.float32)
        self._background8 = np.empty(shape, np.uint8)
        self._diff = np.empty(shape, np.uint8)
        self.foreground = np.empty(shape, np.uint8)
        self._dilated = np.empty(shape, np.uint8)
        self._protected = np.zeros(shape, np.uint8)
        self._unprotected = np.empty(shape, np.uint8)
        self._kernel = np.ones((3, 3), np.uint8)
        self._keep = _keep_mask(settings.mask, self.size)
        self._learning_s = settings.learn_s
        self._global_frames = 0  # consecutive frames with a global change
        self._skip_learning = False
        self._started = False
        self.changed_share = 0.0  # share of the frame that differed from the background (after masking)
        self.lighting_changes = 0  # global changes absorbed by a tone curve
        self.relearns = 0  # changes no tone curve explained: background relearnt

    def detect(self, luma: np.ndarray, dt: float) -> list[Box]:
        """Boxes of moving objects in this frame; `dt` is the time since the previous frame in seconds.

        Call `learn` after each `detect`, with the boxes of the objects to keep out of the background.
        """
        self.small = small = self.downscale(luma)
        cv2.blur(small, (3, 3), dst=self.blurred)
        self._skip_learning = False
        if not self._started:
            self._started = True
            self.background[:] = self.blurred
            self._skip_learning = True
            return []
        self._difference()
        if self.changed_share > LIGHTING_SHARE:
            relit = self._relit_background()
            if relit is not None or self.changed_share > self.settings.relearn_share:
                self._global_frames += 1
                if self._global_frames < LIGHTING_FRAMES:
                    self._skip_learning = True  # maybe a flash: keep the background as it was
                    return []
                if relit is not None:
                    self.background[:] = relit
                    self.lighting_changes += 1
                else:
                    self.background[:] = self.blurred
                    self._learning_s = self.settings.learn_s
                    self.relearns += 1
                self._difference()
        self._global_frames = 0
        if self._learning_s > 0:
            self._learning_s -= dt
            return []
        cv2.dilate(self.foreground, self._kernel, dst=self._dilated, iterations=self.settings.dilate)
        contours, _ = cv2.findContours(self._dilated, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        # Dilation grew every blob by `dilate` pixels on each side: the feet are where they were before it.
        grow = self.settings.dilate
        return self._objects(
            [(x + grow, y + grow, max(1, w - 2 * grow), max(1, h - 2 * grow)) for x, y, w, h in map(cv2.boundingRect, contours)]
        )

    def learn(self, dt: float, keep: Sequence[tuple[float, float, float, float]] = ()) -> None:
        """Update the background with the latest frame; slowly inside the `keep` boxes (x, y, w, h, detection pixels)."""
        if self._skip_learning:
            return
        learning = self._learning_s > 0
        fast = _alpha(dt, LEARNING_S if learning else self.settings.background_s)
        if not keep:
            cv2.accumulateWeighted(self.blurred, self.background, fast)
            return
        self._protected[:] = 0
        for x, y, w, h in keep:
            cv2.rectangle(self._protected, (int(x) - 1, int(y) - 1), (int(x + w) + 1, int(y + h) + 1), 255, -1)
        cv2.bitwise_not(self._protected, dst=self._unprotected)
        cv2.accumulateWeighted(self.blurred, self.background, fast, mask=self._unprotected)
        cv2.accumulateWeighted(self.blurred, self.background, _alpha(dt, self.settings.foreground_s), mask=self._protected)

    def _difference(self) -> None:
        cv2.convertScaleAbs(self.background, dst=self._background8)
        cv2.absdiff(self.blurred, self._background8, dst=self._diff)
        cv2.threshold(self._diff, self.settings.threshold, 255, cv2.THRESH_BINARY, dst=self.foreground)
        if self._keep is not None:
            cv2.bitwise_and(self.foreground, self._keep, dst=self.foreground)
        self.changed_share = cv2.countNonZero(self.foreground) / self.area

    def _relit_background(self) -> np.ndarray | None:
        """The background mapped through the tone curve to the new frame, if one explains most of the change.

        Lighting changes every pixel of a grey level alike, so the mean new level per background level is a
        tone curve; real objects are a few outliers in it. A monotone curve that leaves at most a third of the
        changed pixels unexplained is lighting (lights switched, an IR mode change, a flash).
        """
        levels = self._background8.ravel()
        bins = levels >> 4
        counts = np.bincount(bins, minlength=_TONE_BINS)
        present = counts >= max(8, self.area // 500)
        if np.count_nonzero(present) < 2:
            return None
        level_mean = np.bincount(bins, weights=levels, minlength=_TONE_BINS)[present] / counts[present]
        new_mean = np.bincount(bins, weights=self.blurred.ravel(), minlength=_TONE_BINS)[present] / counts[present]
        if np.any(np.diff(new_mean) < -2.0):  # a tone curve never turns darker levels brighter than lighter ones
            return None
        relit = np.interp(self.background, level_mean, new_mean).astype(np.float32)
        unexplained = np.count_nonzero(cv2.absdiff(self.blurred, cv2.convertScaleAbs(relit)) > self.settings.threshold)
        return relit if unexplained <= self.changed_share * self.area / 3 else None

    def _objects(self, boxes: list[Box]) -> list[Box]:
        """The boxes that pass the size and aspect filter, after joining the parts of each object."""
        floor = self.objects.min_area * self.area / 4  # specks too small to be part of anything: not worth joining
        boxes = merge_parts([box for box in boxes if box[2] * box[3] >= floor])
        low, high = self.objects.min_area * self.area, self.objects.max_area * self.area
        return [
            box for box in boxes
            if low <= box[2] * box[3] <= high and self.objects.min_aspect <= box[2] / box[3] <= self.objects.max_aspect
        ]


def merge_parts(boxes: list[Box]) -> list[Box]:
    """Boxes (x, y, w, h) with each group of parts of one object replaced by its union.

    Parts overlap, or are stacked: mostly above one another with a small gap (a head, a torso that looks like
    the background behind it, legs). Two people side by side stay apart. Plain Python: there are a handful.
    """
    boxes = list(boxes)
    joined = True
    while joined and 1 < len(boxes) <= MAX_JOINED:
        joined = False
        for i, j in combinations(range(len(boxes)), 2):
            if _parts_of_one(boxes[i], boxes[j]):
                (ax, ay, aw, ah), (bx, by, bw, bh) = boxes[i], boxes[j]
                x, y = min(ax, bx), min(ay, by)
                boxes[i] = (x, y, max(ax + aw, bx + bw) - x, max(ay + ah, by + bh) - y)
                del boxes[j]
                joined = True
                break
    return boxes


def _parts_of_one(a: Box, b: Box) -> bool:
    (ax, ay, aw, ah), (bx, by, bw, bh) = a, b
    x_overlap = min(ax + aw, bx + bw) - max(ax, bx)
    y_gap = max(ay, by) - min(ay + ah, by + bh)
    return (x_overlap > 0 and y_gap < 0) or (x_overlap >= 0.5 * min(aw, bw) and y_gap <= 0.5 * min(ah, bh))


def _alpha(dt: float, time_constant_s: float) -> float:
    """Weight of a new frame in an exponential average with this time constant."""
    return 1.0 - math.exp(-max(dt, 0.0) / time_constant_s)


def _keep_mask(polygons: list[list[tuple[float, float]]], size: tuple[int, int]) -> np.ndarray | None:
    """255 where motion counts, 0 inside the configured mask polygons; None without a mask."""
    if not polygons:
        return None
    width, height = size
    keep = np.full((height, width), 255, np.uint8)
    scale = np.array([width, height], np.float64)
    cv2.fillPoly(keep, [np.round(np.asarray(p, np.float64) * scale).astype(np.int32) for p in polygons], 0)
    return keep
