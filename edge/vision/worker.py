"""The camera worker: one process per camera, so several cameras use several cores; the edge's loop only gets events.

Inside the worker (`python -m edge.vision.worker CONFIG_JSON`): a capture thread keeps the latest-frame slot
filled, reconnecting with backoff when the stream drops; the analysis loop runs the camera pipeline on the
newest frame and raises camera_offline when no frame has come for `offline_after_s` (camera_online when
frames return); an evidence thread writes snapshots and clips from the JPEG ring.

The protocol is JSON lines. Worker -> edge on stdout: `{"event": {...}}`, `{"evidence": {"ref": ..., "file":
{...}}}`, `{"stats": {...}}`. Edge -> worker on stdin: `{"evidence": {"ref": ..., "time": ..., "box": ...}}`.
The worker stops on SIGTERM or when its stdin closes (the edge is gone). Logs go to stderr. On the edge side,
edge.vision.process starts it, reads its lines and starts it again if it dies.

Camera work yields the CPU to alarm handling: the worker lowers its own scheduling priority first thing
(`yield_to_alarms`), and the ffmpeg it starts inherits it, so a press is handled at once however busy the
cameras keep the cores (`guardlink bench latency --cameras 2` measures it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2

from edge.vision.capture import FfmpegSource, FrameSource, SourceError, open_source
from edge.vision.events import CameraEvent, CameraEventKind
from edge.vision.evidence import RING_SLACK_S, EvidenceWriter, FrameRing
from edge.vision.frameslot import LatestFrame
from edge.vision.pipeline import CameraPipeline
from edge.vision.process import RETRY_FIRST_S, RETRY_MAX_S, STABLE_S
from guardlink.cameraconfig import CameraSettings
from guardlink.models import Evidence
from guardlink.siteconfig import BrokerUrl

log = logging.getLogger(__name__)

STATS_EVERY_S = 5.0
CAMERA_NICE = 19  # where SCHED_IDLE is not available
TAKE_TIMEOUT_S = 0.25  # the analysis loop wakes at least this often to check for silence


class CameraWorker:
    """Capture, analysis and evidence of one camera, in the current process."""

    def __init__(
        self,
        camera: CameraSettings,
        emit: Callable[[dict[str, Any]], None],
        *,
        broker: BrokerUrl | None = None,
        evidence_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
        full_speed: bool = False,
        stats_every_s: float = STATS_EVERY_S,
    ) -> None:
        """`full_speed` decodes a file source as fast as it goes, looping (benchmarks); else at its own rate, as a camera."""
        self.camera = camera
        self.full_speed = full_speed
        self.stats_every_s = stats_every_s
        self.emit = emit
        self.broker = broker
        self.clock = clock
        self.stop = threading.Event()
        self.slot = LatestFrame(paced=full_speed)  # a file at full speed goes at analysis's pace, each frame analysed
        self.ring: FrameRing | None = None
        self.evidence: EvidenceWriter | None = None
        if evidence_dir is not None:
            settings = camera.evidence
            self.ring = FrameRing(settings.before_s + settings.after_s + RING_SLACK_S, settings.fps)
            self.evidence = EvidenceWriter(camera, self.ring, evidence_dir, self._evidence_written, clock)
        self.connects = 0
        self._source: FrameSource | None = None
        self._source_lock = threading.Lock()

    def run(self) -> None:
        """Capture and analyse until `stop` is set."""
        capture = threading.Thread(target=self._capture, name=f"capture-{self.camera.id}", daemon=True)
        capture.start()
        try:
            self._analyse()
        finally:
            self.stop.set()
            self.slot.close()
            with self._source_lock:
                if self._source is not None:
                    self._source.close()
            capture.join(10)
            if self.evidence is not None:
                self.evidence.close()

    def request_evidence(self, ref: str, t: float, box: tuple[float, float, float, float] | None) -> None:
        """Snapshot now, clip later, for incident `ref`; ignored without an evidence directory."""
        if self.evidence is not None:
            self.evidence.request(ref, t, box)

    def _capture(self) -> None:
        delay = RETRY_FIRST_S
        while not self.stop.is_set():
            started = self.clock()
            try:
                self._stream(open_source(
                    self.camera, live=not self.full_speed, loop=self.full_speed, ring=self.ring.add if self.ring else None,
                    broker=self.broker, clock=self.clock,
                ))
            except SourceError as exc:
                if self.stop.is_set():
                    return
                log.warning("event=camera_connect_failed camera=%s retry_in_s=%.1f error=%r", self.camera.id, delay, str(exc))
            else:
                if self.stop.is_set():
                    return
                log.warning("event=camera_stream_ended camera=%s retry_in_s=%.1f", self.camera.id, delay)
                if self.clock() - started >= STABLE_S:
                    delay = RETRY_FIRST_S
            self.stop.wait(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    def _stream(self, source: FrameSource) -> None:
        """Frames of one connection into the slot, until the stream ends or the worker stops."""
        with self._source_lock:
            if self.stop.is_set():
                source.close()
                return
            self._source = source  # from here `run` can close it, even while it waits for the stream
        try:
            source.start()
            self.connects += 1
            log.info("event=camera_connected camera=%s frame=%dx%d", self.camera.id, source.shape[1], source.shape[0])
            while not self.stop.is_set() and source.read_into(self.slot.writable(source.shape)):
                self.slot.publish(self.clock())
        finally:
            with self._source_lock:
                self._source = None
            source.close()

    def _analyse(self) -> None:
        pipeline: CameraPipeline | None = None
        last_frame = self.clock()
        stats_at = last_frame - self.stats_every_s + min(1.0, self.stats_every_s)  # the first report after a second at most
        online: bool | None = None  # not known until the first frame or the first silence
        frames, moved, cpu_at = 0, 0.0, self._cpu_seconds()
        while not self.stop.is_set():
            taken = self.slot.take(TAKE_TIMEOUT_S)
            now = self.clock()
            if now - stats_at >= self.stats_every_s:
                cpu = self._cpu_seconds()
                self._stats(frames / (now - stats_at), moved / frames if frames else 0.0, 100 * (cpu - cpu_at) / (now - stats_at))
                stats_at, frames, moved, cpu_at = now, 0, 0.0, cpu
            if taken is None:
                if online is not False and now - last_frame >= self.camera.offline_after_s:
                    online = False
                    self._event(CameraEvent(CameraEventKind.OFFLINE, self.camera.id, now, detail=f"no frames for {now - last_frame:.0f} s"))
                continue
            frame, t = taken
            if online is not True:  # also on the first frame: an edge restarted with camera_offline open learns it cleared
                online = True
                self._event(CameraEvent(CameraEventKind.ONLINE, self.camera.id, t, detail=f"frames after {t - last_frame:.0f} s"))
            last_frame = t
            frames += 1
            if pipeline is None or pipeline.source != (frame.shape[1], frame.shape[0]):
                pipeline = CameraPipeline(self.camera, (frame.shape[1], frame.shape[0]))
            for event in pipeline.process(frame, t):
                self._event(event)
            moved += pipeline.motion.changed_share

    def _event(self, event: CameraEvent) -> None:
        log.info("event=camera_event camera=%s kind=%s zone=%s line=%s track=%s", event.camera, event.kind.value, event.zone, event.line, event.track)
        self.emit({"event": event.to_dict()})

    def _evidence_written(self, ref: str, file: Evidence) -> None:
        log.info("event=evidence_written camera=%s incident=%s kind=%s bytes=%d", self.camera.id, ref, file.kind, file.bytes)
        self.emit({"evidence": {"ref": ref, "file": file.model_dump(mode="json")}})

    def _stats(self, fps: float, motion_share: float, cpu_percent: float) -> None:
        self.emit({"stats": {
            "camera": self.camera.id, "fps": round(fps, 2), "dropped": self.slot.dropped, "frames": self.slot.published,
            "connects": self.connects, "motion_share": round(motion_share, 4), "cpu_percent": round(cpu_percent, 1),
        }})

    def _cpu_seconds(self) -> float:
        """CPU time of this worker and of its capture's ffmpeg, if it has one."""
        source = self._source
        return time.process_time() + (source.cpu_seconds() if isinstance(source, FfmpegSource) else 0.0)


def yield_to_alarms() -> str:
    """Put this process (and what it starts) below everything else on the CPU: SCHED_IDLE where Linux offers it
    (it runs only on time nobody else wants, and a waking alarm handler preempts it at once), else nice 19."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return "sched_idle"
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(CAMERA_NICE - os.nice(0))
        return f"nice {os.nice(0)}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of a worker process: `python -m edge.vision.worker '{"camera": ..., "broker": ..., "evidence_dir": ...}'`."""
    args = json.loads((argv if argv is not None else sys.argv[1:])[0])
    logging.basicConfig(level=args.get("log_level", "INFO"), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    priority = yield_to_alarms()
    cv2.setNumThreads(1)  # one core per camera: parallelism comes from the processes
    camera = CameraSettings.model_validate(args["camera"])
    out_lock = threading.Lock()

    def emit(message: dict[str, Any]) -> None:
        with out_lock:
            sys.stdout.write(json.dumps(message) + "\n")
            sys.stdout.flush()

    worker = CameraWorker(
        camera, emit, broker=BrokerUrl.model_validate(args["broker"]) if args.get("broker") else None,
        evidence_dir=Path(args["evidence_dir"]) if args.get("evidence_dir") else None, full_speed=bool(args.get("full_speed")),
        stats_every_s=float(args.get("stats_every_s", STATS_EVERY_S)),
    )
    log.info("event=camera_worker_started camera=%s priority=%r", camera.id, priority)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop.set())
    signal.signal(signal.SIGINT, lambda *_: worker.stop.set())
    threading.Thread(target=_commands, args=(worker,), name="commands", daemon=True).start()
    worker.run()
    return 0


def _commands(worker: CameraWorker) -> None:
    """Evidence requests from the edge on stdin; its end means the edge is gone."""
    for line in sys.stdin:
        try:
            request = json.loads(line)["evidence"]
            box = request.get("box")
            worker.request_evidence(str(request["ref"]), float(request["time"]), tuple(box) if box else None)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("event=bad_command camera=%s error=%r", worker.camera.id, str(exc))
    worker.stop.set()


if __name__ == "__main__":
    sys.exit(main())
