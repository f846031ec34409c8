"""Camera tamper: covered, defocused or moved, judged against a reference view learnt while the camera looks normal.

Three numbers per check, on the detection image: contrast (standard deviation of luma), sharpness (mean absolute
Laplacian per unit of contrast, so dimming is not blur) and similarity (normalised correlation with the reference
view, which lighting changes barely touch). A covered lens loses contrast and similarity; a defocused one loses
sharpness but keeps its layout; a moved one keeps sharpness and loses similarity. A condition must last
`after_s` to be raised and be gone as long to clear, so a person walking past the lens is not tamper.
"""

from __future__ import annotations

import cv2
import numpy as np

from guardlink.cameraconfig import TamperSettings

CHECK_EVERY_S = 0.2
REFERENCE_S = 30.0  # time constant of the reference view while the camera looks normal
COVERED_CONTRAST = 0.3  # of the reference contrast
COVERED_SHARPNESS = 0.3  # of the reference sharpness
DEFOCUSED_SHARPNESS = 0.5
SAME_VIEW = 0.6  # similarity above which the layout is still the reference's
MOVED_VIEW = 0.4
RELEARN_S = 300.0  # a view that stays moved this long becomes the new reference (the camera was re-aimed)


class TamperDetector:
    """Feed it every frame; it says when a tamper condition is raised or cleared."""

    def __init__(self, settings: TamperSettings, size: tuple[int, int]) -> None:
        width, height = size
        self.settings = settings
        self._laplacian = np.empty((height, width), np.int16)
        self._magnitude = np.empty((height, width), np.uint8)
        self._current = np.empty((height, width), np.float32)
        self._product = np.empty((height, width), np.float32)
        self.reference: np.ndarray | None = None
        self.reference_contrast = 0.0
        self.reference_sharpness = 0.0
        self.state: str | None = None  # the raised condition
        self.raised_at = 0.0
        self.features: tuple[float, float, float] = (0.0, 0.0, 1.0)  # contrast, sharpness, similarity of the last check
        self._seen: str | None = None  # what the checks have been saying ...
        self._seen_since = 0.0  # ... since when
        self._last_check: float | None = None

    def update(self, small: np.ndarray, blurred: np.ndarray, t: float) -> tuple[str, bool] | None:
        """(condition, True) when one is raised, (condition, False) when it clears, else None."""
        if not self.settings.enabled or (self._last_check is not None and t - self._last_check < CHECK_EVERY_S):
            return None
        dt = 0.0 if self._last_check is None else t - self._last_check
        self._last_check = t
        mean, deviation = cv2.meanStdDev(blurred)
        contrast = float(deviation[0, 0])
        cv2.Laplacian(small, cv2.CV_16S, dst=self._laplacian)
        cv2.convertScaleAbs(self._laplacian, dst=self._magnitude)
        sharpness = cv2.mean(self._magnitude)[0] / (contrast + 1.0)
        if self.reference is None:
            self.reference = blurred.astype(np.float32)
            self.reference_contrast, self.reference_sharpness = contrast, sharpness
            return None
        similarity = self._correlation(blurred, float(mean[0, 0]), contrast)
        self.features = (contrast, sharpness, similarity)
        seen = self._judge(contrast, sharpness, similarity)
        if seen != self._seen:
            self._seen, self._seen_since = seen, t
        if self.state is None and seen is None:
            alpha = min(1.0, dt / REFERENCE_S)
            cv2.accumulateWeighted(blurred, self.reference, alpha)
            self.reference_contrast += alpha * (contrast - self.reference_contrast)
            self.reference_sharpness += alpha * (sharpness - self.reference_sharpness)
        lasted = t - self._seen_since >= self.settings.after_s
        if self.state is None:
            if seen is not None and lasted:
                self.state, self.raised_at = seen, t
                return seen, True
            return None
        if seen is None and lasted:
            return self._clear()
        if self.state == "moved" and seen == "moved" and t - self.raised_at >= RELEARN_S:
            self.reference = blurred.astype(np.float32)
            self.reference_contrast, self.reference_sharpness = contrast, sharpness
            return self._clear()
        return None

    def _correlation(self, blurred: np.ndarray, mean: float, deviation: float) -> float:
        """Pearson correlation of the frame with the reference view (1: the same layout, lighting aside)."""
        assert self.reference is not None  # set before anything is compared with it
        reference_mean, reference_deviation = (float(v[0, 0]) for v in cv2.meanStdDev(self.reference))
        if deviation < 1 or reference_deviation < 1:
            return 0.0
        self._current[:] = blurred
        cv2.multiply(self._current, self.reference, dst=self._product)
        return (cv2.mean(self._product)[0] - mean * reference_mean) / (deviation * reference_deviation)

    def _clear(self) -> tuple[str, bool]:
        cleared, self.state = self.state, None
        assert cleared is not None  # only a raised tamper is cleared
        return cleared, False

    def _judge(self, contrast: float, sharpness: float, similarity: float) -> str | None:
        if contrast < COVERED_CONTRAST * self.reference_contrast or (
            sharpness < COVERED_SHARPNESS * self.reference_sharpness and similarity < SAME_VIEW
        ):
            return "covered"
        if sharpness < DEFOCUSED_SHARPNESS * self.reference_sharpness:
            return "defocused"
        if similarity < MOVED_VIEW:
            return "moved"
        return None
