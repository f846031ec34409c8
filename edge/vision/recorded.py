"""Analysis of recorded video: every frame of a file through the camera pipeline, as fast as it decodes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from edge.vision.capture import open_source
from edge.vision.events import CameraEvent
from edge.vision.pipeline import CameraPipeline
from guardlink.cameraconfig import CameraSettings

DEFAULT_FPS = 25.0  # for streams that declare no rate


@dataclass(slots=True)
class Progress:
    """How far an analysis got."""

    frames: int = 0
    fps: float = DEFAULT_FPS
    frame_size: tuple[int, int] = (0, 0)  # of the frames read (width, height)
    detection_size: tuple[int, int] = (0, 0)


def analyze_video(path: str, camera: CameraSettings, progress: Progress | None = None) -> Iterator[CameraEvent]:
    """The events of a video file; times are positions in the video (frame index / frame rate)."""
    progress = progress if progress is not None else Progress()
    source = open_source(camera, source=path, live=False)
    try:
        source.start()
        progress.fps = source.fps or DEFAULT_FPS
        rows, columns = source.shape
        progress.frame_size = (columns, rows)
        pipeline = CameraPipeline(camera, (columns, rows))
        progress.detection_size = pipeline.motion.size
        frame = np.empty(source.shape, np.uint8)
        while source.read_into(frame):
            yield from pipeline.process(frame, progress.frames / progress.fps)
            progress.frames += 1
    finally:
        source.close()
