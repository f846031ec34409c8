"""Evidence: the camera's in-memory ring of recent JPEG frames, and what an incident gets from it.

An incident gets a snapshot right away (the frame nearest the event, its box drawn) and, once the after-time
has passed, an MP4 clip from `before_s` before the event to `after_s` after it. Files are written to a
temporary name, fsynced and renamed, so a path that is reported always holds a complete file; each comes
with its size and SHA-256 for the escalation.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import os
import queue
import shutil
import subprocess
import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from gateway.durable import replace_durably
from guardlink.cameraconfig import CameraSettings
from guardlink.models import Evidence, iso

log = logging.getLogger(__name__)

RING_SLACK_S = 3.0  # kept beyond before_s + after_s, for frames that arrive late
SNAPSHOT_WAIT_S = 1.0  # how long a snapshot waits for the ring to hold the event's frame
BOX_COLOUR = (0, 0, 255)


class FrameRing:
    """The last seconds of a camera's frames as JPEG bytes, at most `fps` frames a second. Thread-safe."""

    def __init__(self, seconds: float, fps: float) -> None:
        self.seconds = seconds
        self.interval = 1.0 / fps
        self._frames: deque[tuple[float, bytes]] = deque()
        self._lock = threading.Condition()

    def add(self, jpeg: bytes, t: float) -> None:
        """Keep a frame taken at time `t`, unless it comes sooner than the ring's rate allows."""
        with self._lock:
            if self._frames and t - self._frames[-1][0] < 0.9 * self.interval:
                return
            self._frames.append((t, jpeg))
            while self._frames and self._frames[0][0] < t - self.seconds:
                self._frames.popleft()
            self._lock.notify_all()

    def wait_for(self, t: float, timeout_s: float) -> bool:
        """Wait until the ring holds a frame taken at `t` or later; False if none came within `timeout_s`."""
        with self._lock:
            return self._lock.wait_for(lambda: bool(self._frames) and self._frames[-1][0] >= t, timeout_s)

    def nearest(self, t: float) -> tuple[float, bytes] | None:
        """The frame taken closest to `t`."""
        with self._lock:
            return min(self._frames, key=lambda frame: abs(frame[0] - t), default=None)

    def between(self, start: float, end: float) -> list[tuple[float, bytes]]:
        """The frames taken from `start` to `end`, in order."""
        with self._lock:
            frames = list(self._frames)
        first = bisect_left([t for t, _ in frames], start)
        return [frame for frame in frames[first:] if frame[0] <= end]


def write_snapshot(jpeg: bytes, box: tuple[float, float, float, float] | None, path: Path, quality: int, camera: str, t: float) -> Evidence:
    """The frame with the object's box (fractions of the frame) drawn on it, as a JPEG file."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("the ring frame is not a JPEG image")
    if box is not None:
        height, width = image.shape[:2]
        x, y, w, h = box
        thickness = max(2, width // 400)
        cv2.rectangle(image, (int(x * width), int(y * height)), (int((x + w) * width), int((y + h) * height)), BOX_COLOUR, thickness)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode the snapshot")
    return _store(encoded.tobytes(), path, "snapshot", "image/jpeg", camera, t, t)


def write_clip(frames: list[tuple[float, bytes]], path: Path, camera: str) -> Evidence:
    """The frames as an H.264 MP4 (MPEG-4 part 2 through OpenCV when ffmpeg is missing), at their average rate."""
    if not frames:
        raise ValueError("no frames for the clip")
    span = frames[-1][0] - frames[0][0]
    rate = (len(frames) - 1) / span if span > 0 and len(frames) > 1 else 1.0
    partial = path.with_name(path.name + ".partial.mp4")
    if shutil.which("ffmpeg"):
        command = [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "image2pipe", "-c:v", "mjpeg",
            "-framerate", f"{rate:.3f}", "-i", "-", "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", "-c:v", "libx264",
            "-preset", "veryfast", "-crf", "26", "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4", str(partial),
        ]
        result = subprocess.run(command, check=False, input=b"".join(jpeg for _, jpeg in frames), capture_output=True, timeout=120)
        if result.returncode != 0:
            raise ValueError(f"ffmpeg could not write the clip: {result.stderr.decode(errors='replace').strip()[-300:]}")
    else:
        decoded = [cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) for _, jpeg in frames]
        images = [image for image in decoded if image is not None]  # a JPEG of our own ring: None would be a defect
        writer = cv2.VideoWriter(str(partial), cv2.VideoWriter.fourcc(*"mp4v"), rate, (images[0].shape[1], images[0].shape[0]))
        for image in images:
            writer.write(image)
        writer.release()
    data = partial.read_bytes()
    partial.unlink()
    return _store(data, path, "clip", "video/mp4", camera, frames[0][0], frames[-1][0])


def _store(
    data: bytes, path: Path, kind: Literal["snapshot", "clip"], media_type: Literal["image/jpeg", "video/mp4"], camera: str, start: float, end: float,
) -> Evidence:
    """Write durably: temporary name, fsync, rename, fsync of the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    replace_durably(partial, path)
    return Evidence(
        kind=kind, camera=camera, path=str(path), media_type=media_type, bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
        start=iso(start), end=iso(end),
    )


class EvidenceWriter:
    """One camera's evidence thread: a snapshot as soon as asked, the clip when its after-time has passed."""

    def __init__(
        self,
        camera: CameraSettings,
        ring: FrameRing,
        directory: Path,
        report: Callable[[str, Evidence], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.camera = camera
        self.ring = ring
        self.directory = directory / camera.id
        self.report = report
        self.clock = clock
        self._requests: queue.Queue[tuple[str, float, tuple | None] | None] = queue.Queue()  # None: close
        self._clips: list[tuple[float, str, float]] = []  # (due, ref, event time)
        self._thread = threading.Thread(target=self._run, name=f"evidence-{camera.id}", daemon=True)
        self._thread.start()

    def request(self, ref: str, t: float, box: tuple[float, float, float, float] | None) -> None:
        """Evidence for the incident `ref` (a file-name-safe id) about an event at time `t`."""
        self._requests.put((ref, t, box))

    def close(self) -> None:
        """Finish what is due now and stop (clips not yet due are abandoned)."""
        self._requests.put(None)
        self._thread.join(10)

    def _run(self) -> None:
        while True:
            timeout = max(0.0, self._clips[0][0] - self.clock()) if self._clips else None
            try:
                item = self._requests.get(timeout=timeout)
            except queue.Empty:
                pass
            else:
                if item is None:
                    return
                self._guarded(self._snapshot, *item)
            while self._clips and self._clips[0][0] <= self.clock():
                _, ref, t = heapq.heappop(self._clips)
                self._guarded(self._clip, ref, t)

    def _guarded(self, write: Callable[..., None], *args: object) -> None:
        try:
            write(*args)
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            log.error("event=evidence_failed camera=%s step=%s incident=%s error=%r", self.camera.id, write.__name__.strip("_"), args[0], str(exc))

    def _snapshot(self, ref: str, t: float, box: tuple | None) -> None:
        self.ring.wait_for(t, SNAPSHOT_WAIT_S)  # the ring's frame of the event may still be on its way
        heapq.heappush(self._clips, (t + self.camera.evidence.after_s + self.ring.interval, ref, t))
        frame = self.ring.nearest(t)
        if frame is None:
            raise ValueError("the ring is empty")
        self.report(ref, write_snapshot(frame[1], box, self.directory / f"{ref}-snapshot.jpg", self.camera.evidence.quality, self.camera.id, frame[0]))

    def _clip(self, ref: str, t: float) -> None:
        evidence = self.camera.evidence
        frames = self.ring.between(t - evidence.before_s, t + evidence.after_s)
        self.report(ref, write_clip(frames, self.directory / f"{ref}-clip.mp4", self.camera.id))
