"""Image geometry for the analytics: zone polygons and tripwires, scaled from frame fractions to detection pixels."""

from __future__ import annotations

import math

import cv2
import numpy as np

Point = tuple[float, float]


class ZoneShape:
    """A polygon in detection pixels."""

    def __init__(self, polygon: list[Point], size: tuple[int, int]) -> None:
        self.points = (np.asarray(polygon, np.float32) * np.asarray(size, np.float32)).reshape(-1, 1, 2)

    def contains(self, point: Point) -> bool:
        """Whether the point is inside or on the edge."""
        return cv2.pointPolygonTest(self.points, point, False) >= 0


class Tripwire:
    """A line segment in detection pixels; negative distances are side A (left walking from the first point to the second)."""

    def __init__(self, points: list[Point], size: tuple[int, int]) -> None:
        (ax, ay), (bx, by) = ((x * size[0], y * size[1]) for x, y in points)
        self.a = (ax, ay)
        self.direction = (bx - ax, by - ay)
        self.length = math.hypot(*self.direction)

    def distance(self, p: Point) -> float:
        """Signed distance of a point from the line (side A negative, side B positive)."""
        dx, dy = self.direction
        return (dx * (p[1] - self.a[1]) - dy * (p[0] - self.a[0])) / self.length

    def crossed_within(self, p: Point, q: Point, tolerance_px: float) -> bool:
        """Whether the move p -> q (on opposite sides) meets the line between its two ends, give or take `tolerance_px`."""
        dp, dq = self.distance(p), self.distance(q)
        if dp == dq:
            return False
        f = dp / (dp - dq)
        x, y = p[0] + (q[0] - p[0]) * f, p[1] + (q[1] - p[1]) * f
        dx, dy = self.direction
        along = ((x - self.a[0]) * dx + (y - self.a[1]) * dy) / self.length
        return -tolerance_px <= along <= self.length + tolerance_px
