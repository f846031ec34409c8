"""Square grid cells over a district in a local equirectangular projection (metres east and north of a corner)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from guardlink.geo import EARTH_RADIUS_M

M_PER_DEG_LAT = EARTH_RADIUS_M * math.pi / 180


@dataclass(frozen=True, slots=True)
class Grid:
    """`nx` x `ny` cells of `cell_m` metres from the south-west corner (`lat0`, `lon0`); cell id = row * nx + column."""

    lat0: float
    lon0: float
    cell_m: float
    nx: int
    ny: int

    @classmethod
    def covering(cls, lat: np.ndarray, lon: np.ndarray, cell_m: float) -> Grid:
        """The smallest grid holding every point (at least one cell)."""
        if lat.size == 0:
            raise ValueError("no points to cover")
        lat0, lon0 = float(lat.min()), float(lon.min())
        ny = int((float(lat.max()) - lat0) * M_PER_DEG_LAT // cell_m) + 1
        m_lon = cls(lat0, lon0, cell_m, 1, ny).m_per_deg_lon
        nx = int((float(lon.max()) - lon0) * m_lon // cell_m) + 1
        return cls(lat0, lon0, cell_m, nx, ny)

    @property
    def cells(self) -> int:
        return self.nx * self.ny

    @property
    def m_per_deg_lon(self) -> float:
        return M_PER_DEG_LAT * math.cos(math.radians(self.lat0 + self.ny * self.cell_m / M_PER_DEG_LAT / 2))

    def cell_of(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Cell id of each point; -1 outside the grid."""
        col = np.floor((lon - self.lon0) * self.m_per_deg_lon / self.cell_m).astype(np.int64)
        row = np.floor((lat - self.lat0) * M_PER_DEG_LAT / self.cell_m).astype(np.int64)
        inside = (col >= 0) & (col < self.nx) & (row >= 0) & (row < self.ny)
        return np.where(inside, row * self.nx + col, -1)

    def bounds(self, cell: int) -> tuple[float, float, float, float]:
        """(south, west, north, east) of a cell in degrees."""
        row, col = divmod(int(cell), self.nx)
        dlat, dlon = self.cell_m / M_PER_DEG_LAT, self.cell_m / self.m_per_deg_lon
        south, west = self.lat0 + row * dlat, self.lon0 + col * dlon
        return south, west, south + dlat, west + dlon

    def centre(self, cell: int) -> tuple[float, float]:
        """(lat, lon) of a cell's centre."""
        south, west, north, east = self.bounds(cell)
        return (south + north) / 2, (west + east) / 2


def smooth(values: np.ndarray, grid: Grid, sigma_cells: float) -> np.ndarray:
    """A Gaussian blur of per-cell values (last axis = cells) with `sigma_cells`; mass that leaves the grid is lost."""
    if sigma_cells <= 0:
        return values
    radius = max(1, math.ceil(3 * sigma_cells))
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma_cells) ** 2)
    weights /= weights.sum()
    image = values.reshape(*values.shape[:-1], grid.ny, grid.nx)
    for axis in (-1, -2):
        image = _convolve_axis(image, weights, radius, axis)
    return image.reshape(values.shape)


def _convolve_axis(image: np.ndarray, weights: np.ndarray, radius: int, axis: int) -> np.ndarray:
    padding = [(0, 0)] * image.ndim
    padding[axis] = (radius, radius)
    padded = np.pad(image, padding)
    size = image.shape[axis]
    out = np.zeros_like(image, dtype=np.float64)
    for k, weight in enumerate(weights):
        out += weight * np.take(padded, np.arange(k, k + size), axis=axis)
    return out
