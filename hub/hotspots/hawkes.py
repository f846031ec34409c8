"""A self-exciting (Hawkes) model on the grid, after Mohler et al. (JASA 2015), fitted by expectation-maximisation.

Each cell n has an intensity (incidents per day)

    lambda_n(t) = 24 * nu[n, hour(t)] + theta * omega * sum over earlier incidents i in n of exp(-omega * (t - t_i))

a background that differs by hour of the day (`nu[n, h]`: background incidents per day in hour h), plus near-repeats:
every incident raises its cell's rate, by `theta` expected follow-ups spread over ~1/omega days. As in Mohler's field
trial the triggering stays in the cell; the background learns each cell's own key hours, shrunk towards the district's
hour profile by `prior_events` pseudo-incidents, so a cell with few incidents follows the district's hours.

EM (stochastic declustering, Veen & Schoenberg 2008; Mohler 2015) over the pairs (parent, child) in the same cell at
most `horizon_days` apart, the last `max_parents` parents of each child, built once with one vectorised pass per offset:
  E: each incident is background with probability p_bg = 24 nu / lambda, the follow-up of an earlier i with
     p_i = theta omega exp(-omega dt) / lambda;
  M: theta = sum p_i / sum_i (1 - exp(-omega * min(T - t_i, horizon)));  omega = sum p_i / sum p_i dt;
     nu[n, h] = (B[n, h] + m * a[h] / 24) * B[n] / (B[n] + m) / T, with B the p_bg summed per cell and hour and a the
     district's hour profile (mean 1).
A window [s, s + H) is then scored with its expected count: the background over the window's hours (from p_bg of every
incident before s, decayed over `background_decay_days` so spots that cool down fade, blurred over `sigma_m`) plus
theta (1 - exp(-omega H)) sum exp(-omega (s - t_i)) over the cell's incidents before s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hub.hotspots.grid import smooth
from hub.hotspots.methods import TOD_BINS, History, tod_weights

HOURS = 24


@dataclass(frozen=True, slots=True)
class Pairs:
    """Incidents (`child` indices) following an earlier one in the same cell by `dt` days (at most the horizon); one entry
    per (earlier, later) pair."""

    child: np.ndarray
    dt: np.ndarray


@dataclass(frozen=True, slots=True)
class Fit:
    """A fitted model: near-repeat size `theta` and rate `omega` (per day), and each incident's chance of being background."""

    theta: float
    omega: float
    p_background: np.ndarray
    until: float
    iterations: int


def near_pairs(history: History, horizon_days: float, max_parents: int) -> Pairs:
    """Every pair of incidents in one cell at most `horizon_days` apart, up to `max_parents` parents per child."""
    order = np.lexsort((history.t, history.cell))
    cell, t = history.cell[order], history.t[order]
    children, gaps = [], []
    for k in range(1, min(max_parents, order.size - 1) + 1):  # one vectorised pass per offset, not per incident
        dt = t[k:] - t[:-k]
        keep = (cell[k:] == cell[:-k]) & (dt <= horizon_days)
        if not keep.any():
            break
        children.append(order[k:][keep])
        gaps.append(dt[keep])
    if not children:
        return Pairs(np.empty(0, np.int64), np.empty(0))
    return Pairs(np.concatenate(children), np.concatenate(gaps))


@dataclass
class SelfExciting:
    """The prospective near-repeat method: refitted by EM every `refit_days` on the incidents before the window."""

    name: str = "hawkes"
    horizon_days: float = 21.0
    max_parents: int = 64
    prior_events: float = 4.0
    sigma_m: float = 150.0
    background_decay_days: float = 120.0
    refit_days: float = 28.0
    iterations: int = 60
    fit: Fit | None = None
    _pairs: tuple[History, Pairs] | None = field(default=None, repr=False)

    def pairs(self, history: History) -> Pairs:
        if self._pairs is None or self._pairs[0] is not history:
            self._pairs = (history, near_pairs(history, self.horizon_days, self.max_parents))
            self.fit = None
        return self._pairs[1]

    def predict(self, history: History, start: float, hours: float) -> np.ndarray:
        pairs = self.pairs(history)
        if self.fit is None or start - self.fit.until >= self.refit_days or start < self.fit.until:
            self.fit = fit(history, pairs, start, self.iterations, self.fit)
        return self.expected(history, self.fit, start, hours)

    def expected(self, history: History, fitted: Fit, start: float, hours: float) -> np.ndarray:
        """Expected incidents per cell in [start, start + hours) from the incidents before `start`."""
        span = history.before(start)
        cells = history.grid.cells
        if span.stop == 0:
            return np.zeros(cells)
        t = history.t[span]
        decay = np.exp((t - start) / self.background_decay_days)
        exposure = self.background_decay_days * (1 - math.exp((history.t[0] - start) / self.background_decay_days))
        hour = history.tod_bin[span] * HOURS // TOD_BINS
        nu = background_rates(history.cell[span], hour, fitted.p_background[span] * decay, cells, self.prior_events) / exposure
        cover = tod_weights(start, hours, 0.0).reshape(HOURS, -1).mean(axis=1) * max(1.0, hours / 24)
        background = smooth(nu @ cover, history.grid, self.sigma_m / history.grid.cell_m)
        recent = history.before(start, self.horizon_days)
        weights = np.exp(-fitted.omega * (start - history.t[recent]))
        triggered = fitted.theta * (1 - math.exp(-fitted.omega * hours / 24)) * np.bincount(history.cell[recent], weights, minlength=cells)
        return background + triggered


def background_rates(cell: np.ndarray, hour: np.ndarray, weight: np.ndarray, cells: int, prior_events: float) -> np.ndarray:
    """Background incidents per cell and hour of the day (not yet divided by the exposure): each cell's own hours,
    shrunk towards the district's hour profile by `prior_events` pseudo-incidents."""
    counts = np.bincount(cell * HOURS + hour, weight, minlength=cells * HOURS).reshape(cells, HOURS)
    per_cell = counts.sum(axis=1, keepdims=True)
    profile = counts.sum(axis=0) / max(float(per_cell.sum()), 1e-12)
    if math.isinf(prior_events):
        return per_cell * profile
    return (counts + prior_events * profile) * per_cell / (per_cell + prior_events)


def fit(history: History, pairs: Pairs, until: float, iterations: int, previous: Fit | None = None) -> Fit:
    """EM on the incidents before `until` (warm-started from `previous`); p_background is then given for every incident."""
    n = int(np.searchsorted(history.t, until, "left"))
    cells = history.grid.cells
    hour = history.tod_bin * HOURS // TOD_BINS
    horizon = float(pairs.dt.max()) if pairs.dt.size else 1.0
    used = pairs.child < n
    child, dt = pairs.child[used], pairs.dt[used]
    exposure = max(until - float(history.t[0]), 1.0) if n else 1.0
    left = np.minimum(until - history.t[:n], horizon)
    theta, omega = (previous.theta, previous.omega) if previous else (0.2, 0.5)
    p_bg = np.ones(n)
    done = 0
    while done < iterations:  # EM iterations, each vectorised over all pairs
        done += 1
        nu = background_rates(history.cell[:n], hour[:n], p_bg, cells, math.inf) / exposure
        background = HOURS * nu[history.cell[:n], hour[:n]]
        trigger = theta * omega * np.exp(-omega * dt)
        rate = background + np.bincount(child, trigger, minlength=n)
        p_bg = background / rate
        p_child = trigger / rate[child]
        offspring = float(p_child.sum())
        new_theta = min(offspring / max(float((1 - np.exp(-omega * left)).sum()), 1e-12), 0.95)
        new_omega = float(np.clip(offspring / max(float((p_child * dt).sum()), 1e-12), 1 / 60, 48.0))
        converged = abs(new_theta - theta) < 1e-4 and abs(new_omega - omega) < 1e-4 * omega
        theta, omega = new_theta, new_omega
        if converged:
            break
    nu = background_rates(history.cell[:n], hour[:n], p_bg, cells, math.inf) / exposure
    background_all = HOURS * nu[history.cell, hour]
    trigger_all = theta * omega * np.exp(-omega * pairs.dt)
    rate_all = background_all + np.bincount(pairs.child, trigger_all, minlength=history.t.size)
    with np.errstate(divide="ignore", invalid="ignore"):  # an incident in a cell with nothing before it is background
        p_background = np.where(rate_all > 0, background_all / rate_all, 1.0)
    return Fit(theta, omega, p_background, until, done)
