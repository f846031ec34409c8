"""One camera's analysis of successive luma frames: motion core -> tracker -> zone and line analytics, and tamper.

No I/O and no clock: frames and their times are passed in, events come out, so files, live streams, tests and
the benchmark all run exactly this code.
"""

from __future__ import annotations

import numpy as np

from edge.vision.analytics import Analytics
from edge.vision.events import CameraEvent, CameraEventKind
from edge.vision.motion import MotionDetector
from edge.vision.tamper import TamperDetector
from edge.vision.tracker import Tracker
from guardlink.cameraconfig import CameraSettings

DEFAULT_DT = 0.04  # before the second frame: a typical 25 fps camera


class CameraPipeline:
    """Events of one camera from its frames (luma planes of one size, any size at least the detection size)."""

    def __init__(self, camera: CameraSettings, source: tuple[int, int]) -> None:
        self.camera = camera
        self.source = source
        self.motion = MotionDetector(camera.motion, camera.objects, source)
        self.tracker = Tracker(camera.tracker)
        self.analytics = Analytics(camera, self.motion.size)
        self.tamper = TamperDetector(camera.tamper, self.motion.size)
        self.frames = 0
        self._last_t: float | None = None

    def process(self, luma: np.ndarray, t: float) -> list[CameraEvent]:
        """Events caused by this frame, taken at time `t` (seconds)."""
        dt = DEFAULT_DT if self._last_t is None else max(t - self._last_t, 0.0)
        self._last_t = t
        frame = self.frames
        self.frames += 1
        boxes = self.motion.detect(luma, dt)
        tracks = self.tracker.update(boxes, t, dt)
        self.motion.learn(dt, [track.box for track in tracks if track.moved])
        events = self.analytics.update(tracks, t, frame)
        change = self.tamper.update(self.motion.small, self.motion.blurred, t)
        if change is not None:
            reason, raised = change
            kind = CameraEventKind.TAMPER if raised else CameraEventKind.TAMPER_CLEARED
            events.append(CameraEvent(kind, self.camera.id, t, frame, detail=reason))
        return events
