"""Replaying a history day by day: each window of each day is predicted from the incidents before it, then scored.

Hit rate at a% = share of the window's incidents that fall in the top a% of cells; the Predictive Accuracy Index
(Chainey et al. 2008) = hit rate / area share. Both are summed over all windows (incidents captured / incidents).
Ties between cells are broken by one fixed random order, the same for every method.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from hub.hotspots.grid import Grid
from hub.hotspots.hawkes import SelfExciting
from hub.hotspots.methods import Baseline, History, KernelDensity
from hub.hotspots.records import Incidents

AREAS = (0.01, 0.05, 0.10)
WARMUP_DAYS = 28  # the baseline looks back 4 weeks


class Method(Protocol):
    """Scores every cell for [start, start + hours) from the incidents before `start`."""

    @property
    def name(self) -> str: ...

    def predict(self, history: History, start: float, hours: float) -> np.ndarray: ...


@dataclass(slots=True)
class MethodResult:
    """How one method did: incidents captured within each area share, and the seconds it spent predicting."""

    name: str
    captured: dict[float, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(slots=True)
class Evaluation:
    """The whole replay: windows, incidents in them, and each method's result."""

    cells: int
    hours: float
    days: int
    windows: int
    incidents: int
    results: list[MethodResult]

    def hit_rate(self, result: MethodResult, area: float) -> float:
        return result.captured[area] / self.incidents if self.incidents else 0.0

    def area_share(self, area: float) -> float:
        """The share of cells actually flagged for `area` (whole cells: at least one)."""
        return flagged(self.cells, area) / self.cells

    def pai(self, result: MethodResult, area: float) -> float:
        return self.hit_rate(result, area) / self.area_share(area)


def flagged(cells: int, area: float) -> int:
    """How many cells the top `area` share of the grid is."""
    return max(1, round(cells * area))


def evaluate(history: History, methods: Sequence[Method], hours: float = 8.0, warmup_days: int = WARMUP_DAYS,
             progress: Callable[[int, int], None] | None = None, seed: int = 0) -> Evaluation:
    """Replay every whole day after `warmup_days`, in windows of `hours` (which divide the day), with each method."""
    if hours <= 0 or (24 / hours) % 1:
        raise ValueError(f"windows of {hours:g} h do not divide the day; use 1, 2, 3, 4, 6, 8, 12 or 24")
    cells = history.grid.cells
    results = [MethodResult(m.name, dict.fromkeys(AREAS, 0)) for m in methods]
    if history.t.size == 0:
        return Evaluation(cells, hours, 0, 0, 0, results)
    first, last = math.floor(history.t[0]) + warmup_days, math.ceil(history.t[-1])
    days = max(0, last - first)
    tiebreak = np.random.default_rng(seed).permutation(cells)
    tops = [flagged(cells, a) for a in AREAS]
    per_day = round(24 / hours)
    windows = incidents = 0
    for day in range(days):  # per window, each step vectorised over cells and incidents
        for w in range(per_day):
            start = first + day + w * hours / 24
            span = history.before(start + hours / 24, hours / 24)
            actual = np.bincount(history.cell[span], minlength=cells)
            windows += 1
            incidents += int(span.stop - span.start)
            for method, result in zip(methods, results):
                began = time.perf_counter()
                scores = method.predict(history, start, hours)
                result.seconds += time.perf_counter() - began
                if span.stop == span.start:
                    continue
                captured = np.cumsum(actual[top_cells(scores, tiebreak, tops[-1])])
                for area, k in zip(AREAS, tops):
                    result.captured[area] += int(captured[k - 1])
        if progress:
            progress(day + 1, days)
    return Evaluation(cells, hours, days, windows, incidents, results)


def top_cells(scores: np.ndarray, tiebreak: np.ndarray, k: int) -> np.ndarray:
    """The `k` highest-scoring cells, best first; equal scores in `tiebreak` order."""
    k = min(k, scores.size)
    threshold = np.partition(scores, scores.size - k)[scores.size - k]
    candidates = np.flatnonzero(scores >= threshold)  # all ties at the threshold, so the tie-break decides among them
    order = np.lexsort((tiebreak[candidates], -scores[candidates]))
    return candidates[order[:k]]


def replay(incidents: Incidents, grid: Grid, hours: float, began: float, progress: Callable[[int, int], None] | None = None) -> tuple[Evaluation, dict[str, Any]]:
    """Evaluate the baseline, the kernel density and the self-exciting method; figures with `hotspots_eval_s` since `began`
    (a time.perf_counter(), taken before the records were read)."""
    evaluation = evaluate(History.of(incidents, grid), [Baseline(), KernelDensity(), SelfExciting()], hours, progress=progress)
    return evaluation, figures(evaluation, time.perf_counter() - began)


def figures(evaluation: Evaluation, seconds: float) -> dict[str, Any]:
    """The evaluation's figures: per method `hit_rate_5pct`, `pai_5pct` (and 1, 10 %), the baseline's, and the best gain."""
    methods: dict[str, dict[str, float]] = {}
    for result in evaluation.results:
        figures: dict[str, float] = {}
        for area in AREAS:
            pct = f"{round(area * 100)}pct"
            figures[f"hit_rate_{pct}"] = round(evaluation.hit_rate(result, area), 4)
            figures[f"pai_{pct}"] = round(evaluation.pai(result, area), 3)
        figures["predict_s"] = round(result.seconds, 2)
        methods[result.name] = figures
    baseline = methods.pop("baseline")
    best = max(methods, key=lambda name: methods[name]["pai_5pct"])
    flat = {f"{name}_{key}": value for name, figures in methods.items() for key, value in figures.items()}
    return {
        "incidents": evaluation.incidents,
        "days": evaluation.days,
        "windows": evaluation.windows,
        "window_hours": evaluation.hours,
        "cells": evaluation.cells,
        "methods": methods,
        "baseline": baseline,
        **{f"baseline_{key}": value for key, value in baseline.items()},
        **flat,
        "best_method": best,
        "pai_gain_5pct": round(methods[best]["pai_5pct"] / baseline["pai_5pct"], 3) if baseline["pai_5pct"] else None,
        "hotspots_eval_s": round(seconds, 2),
    }
