"""The simple hotspot methods: the naive baseline and a kernel density with time decay.

Each scores every cell for a coming window [start, start + hours) from the incidents strictly before `start`;
higher means more incidents expected. Times are days on the district's local clock (records.Incidents.t).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hub.hotspots.grid import Grid, smooth
from hub.hotspots.records import Incidents

TOD_BINS = 96  # quarter hours


@dataclass(frozen=True, slots=True)
class History:
    """Incidents placed on a grid: times (local days, sorted), their cells, and the quarter hour of the day of each."""

    t: np.ndarray
    cell: np.ndarray
    tod_bin: np.ndarray
    grid: Grid

    @classmethod
    def of(cls, incidents: Incidents, grid: Grid) -> History:
        """The incidents inside `grid` (the others are left out)."""
        cell = grid.cell_of(incidents.lat, incidents.lon)
        inside = cell >= 0
        t = incidents.t[inside]
        return cls(t, cell[inside], tod_bin(t), grid)

    def before(self, start: float, lookback_days: float = math.inf) -> slice:
        """The index range of the incidents in [start - lookback_days, start)."""
        first = 0 if math.isinf(lookback_days) else int(np.searchsorted(self.t, start - lookback_days, "left"))
        return slice(first, int(np.searchsorted(self.t, start, "left")))


def tod_bin(t: np.ndarray) -> np.ndarray:
    """The quarter hour of the day (0..95) of each time."""
    return np.minimum((np.mod(t, 1.0) * TOD_BINS).astype(np.int64), TOD_BINS - 1)


def tod_weights(start: float, hours: float, sigma_hours: float) -> np.ndarray:
    """Per quarter hour of the day: how much an incident then counts towards the window's hours of the day.

    1 inside the window's hours, falling off as a Gaussian of `sigma_hours` outside them (a box blurred on the
    24-hour circle); a window of a day or more counts every hour fully.
    """
    if hours >= 24:
        return np.ones(TOD_BINS)
    centres = (np.arange(TOD_BINS) + 0.5) * 24 / TOD_BINS
    begin = (start % 1.0) * 24
    weights = np.zeros(TOD_BINS)
    for i, x in enumerate(centres):  # 96 bins, not per incident
        for wrap in (-24.0, 0.0, 24.0):
            a, b = begin + wrap - x, begin + wrap + hours - x
            if sigma_hours > 0:
                weights[i] += 0.5 * (math.erf(b / (sigma_hours * math.sqrt(2))) - math.erf(a / (sigma_hours * math.sqrt(2))))
            else:
                weights[i] += float(a <= 0 < b)
    return np.minimum(weights, 1.0)


@dataclass(frozen=True, slots=True)
class Baseline:
    """What an analyst's weekly map shows: the count of each cell's incidents in the same hours of the last 4 weeks."""

    name: str = "baseline"
    weeks: int = 4

    def predict(self, history: History, start: float, hours: float) -> np.ndarray:
        span = history.before(start, 7 * self.weeks)
        t = history.t[span]
        same_hours = np.mod(t - start, 1.0) < hours / 24 if hours < 24 else np.ones(t.size, bool)
        return np.bincount(history.cell[span][same_hours], minlength=history.grid.cells).astype(np.float64)


@dataclass(frozen=True, slots=True)
class KernelDensity:
    """A Gaussian kernel over space (`sigma_m`), an exponential decay over days (`decay_days`), and a kernel over the
    hour of the day (`sigma_hours` beyond the window's hours), summed over past incidents (Chainey's KDE hotspot map
    made prospective: recent incidents at the same hours count most)."""

    name: str = "kde"
    sigma_m: float = 150.0
    decay_days: float = 60.0
    sigma_hours: float = 1.5
    lookback_days: float = 365.0

    def predict(self, history: History, start: float, hours: float) -> np.ndarray:
        span = history.before(start, self.lookback_days)
        weights = np.exp((history.t[span] - start) / self.decay_days) * tod_weights(start, hours, self.sigma_hours)[history.tod_bin[span]]
        density = np.bincount(history.cell[span], weights, minlength=history.grid.cells)
        return smooth(density, history.grid, self.sigma_m / history.grid.cell_m)
