"""`guardlink bench vision`: the camera motion core and pipeline, each next to a baseline measured in the same run.

One labelled 1080p scene (people walking a yard, a lighting step, an IR-like switch to monochrome) is rendered
and encoded as H.264 at a camera's 4 Mbit/s with ffmpeg; everything below uses that clip.

- motion core per frame against the reference pipeline the issue defines (BGR -> grey, INTER_AREA resize to
  180 rows, 3x3 blur, accumulateWeighted, absdiff, threshold, dilate, findContours), on the same decoded frames,
  each in the form it prefers and converting at its own cost: BGR from cv2.VideoCapture for the reference, the
  full-size Y plane from ffmpeg for the core. One OpenCV thread each (one worker per camera in deployment);
  the best of interleaved rounds. Detection quality of both over every frame against the true boxes.
- the whole camera pipeline (ffmpeg capture of scaled Y planes, motion, tracker, analytics, tamper) in its
  own worker process, against ffmpeg decoding the same clip to nothing, with the same decoder threads.
- two cameras, each a worker process with its ffmpeg, running at once on two cores, against one alone.
- the evidence ring's JPEG output, as extra CPU of the capture ffmpeg (not part of the pipeline above).

The throughput runs go back to back in each round (decode only, one camera, two cameras) and each ratio is
the median of the rounds' ratios, so a machine shared with other work skews them less.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from bench.scenes import YARD_LINE, YARD_ZONE, Scene, precision_recall, yard_walkers
from edge.vision.capture import FfmpegSource
from edge.vision.motion import MotionDetector
from edge.vision.recorded import Progress, analyze_video
from guardlink.cameraconfig import CameraSettings

FPS = 25.0
BITRATE = "4M"
MATCH_IOU = 0.3  # a detected box and a true box this much overlapped are the same object
GOALS = {"motion_speedup": 3.0, "pipeline_vs_decode": 0.9, "two_camera_scaling": 1.8}
CAMERA = CameraSettings(
    id="bench",
    zones=[{"id": "yard", "polygon": YARD_ZONE, "loitering": {"after_s": 20}}],
    lines=[{"id": "fence", "points": YARD_LINE}],
)


class ReferenceMotion:
    """The straightforward OpenCV motion pipeline, written as the usual tutorial code is."""

    def __init__(self, rows: int = 180, threshold: int = 25, alpha: float = 0.05, min_area: float = 0.0015) -> None:
        self.rows, self.threshold, self.alpha, self.min_area = rows, threshold, alpha, min_area
        self.average = None

    def detect(self, bgr) -> list[tuple[int, int, int, int]]:
        """Boxes (x, y, w, h) at 180 rows."""
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        small = cv2.resize(gray, (round(gray.shape[1] * self.rows / gray.shape[0]), self.rows), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (3, 3), 0)
        if self.average is None:
            self.average = small.astype("float32")
            return []
        cv2.accumulateWeighted(small, self.average, self.alpha)
        delta = cv2.absdiff(small, cv2.convertScaleAbs(self.average))
        mask = cv2.threshold(delta, self.threshold, 255, cv2.THRESH_BINARY)[1]
        mask = cv2.dilate(mask, None, iterations=2)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        floor = self.min_area * small.shape[0] * small.shape[1]
        return [cv2.boundingRect(c) for c in contours if cv2.contourArea(c) >= floor]


def make_clip(path: Path, height: int, seconds: float) -> Scene:
    """Render and encode the labelled scene; returns it (for its ground truth)."""
    width = round(height * 16 / 9 / 2) * 2
    scene = Scene(
        width, height, FPS, seconds, yard_walkers(seconds + 10, seed=11), seed=11,
        lighting=[(seconds / 3, 1.35, 10)], ir_at=2 * seconds / 3,
    )
    scene.write(path, bitrate=BITRATE)
    return scene


def bgr_frames(path: Path):
    capture = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    finally:
        capture.release()


def luma_frames(path: Path):
    source = FfmpegSource(str(path), None, CAMERA, live=False, ring=None, clock=time.time)
    try:
        source.start()
        frame = np.empty(source.shape, np.uint8)
        while source.read_into(frame):
            yield frame
    finally:
        source.close()


def time_motion(path: Path, frames: int, rounds: int) -> tuple[float, float]:
    """Best per-frame milliseconds of (reference, core) over interleaved rounds on the first `frames` frames."""
    bgr = [frame for _, frame in zip(range(frames), bgr_frames(path))]
    luma = [frame.copy() for _, frame in zip(range(frames), luma_frames(path))]
    height, width = luma[0].shape
    best_reference = best_core = float("inf")
    for _ in range(rounds):
        reference = ReferenceMotion()
        start = time.perf_counter()
        for frame in bgr:
            reference.detect(frame)
        best_reference = min(best_reference, (time.perf_counter() - start) / len(bgr))
        core = MotionDetector(CAMERA.motion, CAMERA.objects, (width, height))
        start = time.perf_counter()
        for frame in luma:
            core.detect(frame, 1 / FPS)
            core.learn(1 / FPS)
        best_core = min(best_core, (time.perf_counter() - start) / len(luma))
    return best_reference * 1000, best_core * 1000


def detection_quality(path: Path, scene: Scene, skip_s: float = 1.5) -> dict[str, float]:
    """Precision and recall of the reference's and the core's boxes against the true boxes, over every frame."""
    counts = {"reference": [0, 0, 0], "core": [0, 0, 0]}  # true positives, false positives, false negatives
    reference = core = None
    for index, (bgr, luma) in enumerate(zip(bgr_frames(path), luma_frames(path))):
        if core is None:
            reference, core = ReferenceMotion(), MotionDetector(CAMERA.motion, CAMERA.objects, (luma.shape[1], luma.shape[0]))
        found = {"reference": _normalised(reference.detect(bgr), (reference.average.shape[1], reference.average.shape[0]))}
        found["core"] = _normalised(core.detect(luma, 1 / FPS), core.size)
        core.learn(1 / FPS)
        t = scene.time(index)
        if t < skip_s:
            continue
        truth = [box for _, box in scene.truth(t) if _inside_share(box) >= 0.5]
        for name, boxes in found.items():
            matched_truth = sum(1 for box in truth if any(_iou(box, d) >= MATCH_IOU for d in boxes))
            matched_found = sum(1 for d in boxes if any(_iou(box, d) >= MATCH_IOU for box in truth))
            counts[name][0] += matched_truth
            counts[name][1] += len(boxes) - matched_found
            counts[name][2] += len(truth) - matched_truth
    figures = {}
    for name, (tp, fp, fn) in counts.items():
        precision, recall = precision_recall(tp, fp, fn)
        figures[f"{name}_precision"] = round(precision, 4)
        figures[f"{name}_recall"] = round(recall, 4)
        figures[f"{name}_f1"] = round(2 * precision * recall / (precision + recall) if precision + recall else 0.0, 4)
    return figures


def decode_only(path: Path, threads: int) -> tuple[float, float]:
    """(frames per second, CPU seconds) of ffmpeg decoding the clip to nothing."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-threads", str(threads), "-i", str(path), "-map", "0:v:0", "-f", "null", "-"],
        check=True,
    )
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    frames = int(cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT))
    return frames / elapsed, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def capture_cpu(path: Path, ring: bool) -> float:
    """CPU seconds of the capture ffmpeg over the clip, with or without the evidence ring's JPEG output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    source = FfmpegSource(str(path), 2 * CAMERA.motion.frame_height, CAMERA, live=False, ring=(lambda jpeg, t: None) if ring else None, clock=time.time)
    try:
        source.start()
        frame = np.empty(source.shape, np.uint8)
        while source.read_into(frame):
            pass
    finally:
        source.close()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def cameras(path: Path, count: int) -> tuple[float, float, int]:
    """(aggregate frames per second, CPU seconds of workers and their ffmpeg, frames) of `count` camera workers at once."""
    workers = [
        subprocess.Popen([sys.executable, "-m", "bench.vision", "--camera-run", str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    try:
        for worker in workers:
            if worker.stdout.readline().strip() != "ready":
                raise RuntimeError("a camera worker did not start")
        for worker in workers:
            worker.stdin.write("go\n")
            worker.stdin.flush()
        reports = [json.loads(worker.stdout.readline()) for worker in workers]
    finally:
        for worker in workers:
            worker.stdin.close()
            worker.wait(30)
    frames = sum(r["frames"] for r in reports)
    elapsed = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    return frames / elapsed, sum(r["cpu_s"] for r in reports), frames


def camera_run(path: str) -> int:
    """One camera worker for `cameras`: waits for `go`, analyses the clip, reports its figures."""
    cv2.setNumThreads(1)
    print("ready", flush=True)
    sys.stdin.readline()
    before_self, before_children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    progress = Progress()
    for _ in analyze_video(path, CAMERA, progress):
        pass
    end = time.time()
    after_self, after_children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(getattr(a, f) - getattr(b, f) for a, b in ((after_self, before_self), (after_children, before_children)) for f in ("ru_utime", "ru_stime"))
    print(json.dumps({"frames": progress.frames, "start": start, "end": end, "cpu_s": cpu}), flush=True)
    return 0


def run(height: int = 1080, seconds: float = 30.0, rounds: int = 5, timing_frames: int = 60) -> dict[str, object]:
    """Measure everything; returns the figures."""
    cv2.setNumThreads(1)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="guardlink-bench-vision-") as tmp:
        clip = Path(tmp) / "yard.mp4"
        _progress(f"rendering and encoding the {seconds:.0f} s labelled scene at {height} rows")
        scene = make_clip(clip, height, seconds)
        _progress("timing the motion core against the reference pipeline")
        reference_ms, core_ms = time_motion(clip, min(timing_frames, scene.frame_count), max(rounds, 3))
        _progress("detection quality of both on every frame")
        quality = detection_quality(clip, scene)
        _progress("the evidence ring's cost")
        ring_overhead = statistics.median(capture_cpu(clip, True) / capture_cpu(clip, False) for _ in range(3)) - 1
        # Back to back in each round, so the ratios compare runs under the same conditions; the median of the rounds.
        rows = []
        for r in range(rounds):
            _progress(f"decode only, one camera, two cameras: round {r + 1} of {rounds}")
            decode_fps, decode_cpu = decode_only(clip, CAMERA.decode_threads)
            one_fps, one_cpu, _ = cameras(clip, 1)
            two_fps, _, _ = cameras(clip, 2)
            rows.append((decode_fps, one_fps, two_fps, one_fps / decode_fps, one_cpu / decode_cpu, two_fps / one_fps))
    decode_fps, one_fps, two_fps, vs_decode, cpu_vs_decode, scaling = (statistics.median(column) for column in zip(*rows))
    figures = {
        "width": scene.width,
        "height": scene.height,
        "frames": scene.frame_count,
        "reference_ms": round(reference_ms, 4),
        "motion_ms": round(core_ms, 4),
        "motion_speedup": round(reference_ms / core_ms, 2),
        **quality,
        "quality_at_least_reference": quality["core_f1"] >= quality["reference_f1"],
        "decode_fps": round(decode_fps, 1),
        "pipeline_fps": round(one_fps, 1),
        "pipeline_vs_decode": round(vs_decode, 3),
        "pipeline_cpu_vs_decode": round(cpu_vs_decode, 3),
        "two_camera_fps": round(two_fps, 1),
        "two_camera_scaling": round(scaling, 3),
        "rounds": rounds,
        "pipeline_vs_decode_rounds": [round(row[3], 3) for row in rows],
        "two_camera_scaling_rounds": [round(row[5], 3) for row in rows],
        "ring_cpu_overhead": round(ring_overhead, 3),
        "cores": os.cpu_count(),
        "decode_threads": CAMERA.decode_threads,
        "goals": GOALS,
        "seconds": round(time.perf_counter() - began, 1),
    }
    figures["goals_met"] = all(figures[key] >= goal for key, goal in GOALS.items()) and figures["quality_at_least_reference"]
    return figures


def _normalised(boxes: list[tuple[int, int, int, int]], size: tuple[int, int]) -> list[tuple[float, float, float, float]]:
    width, height = size
    return [(x / width, y / height, w / width, h / height) for x, y, w, h in boxes]


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    (ax, ay, aw, ah), (bx, by, bw, bh) = a, b
    iw, ih = min(ax + aw, bx + bw) - max(ax, bx), min(ay + ah, by + bh) - max(ay, by)
    if iw <= 0 or ih <= 0:
        return 0.0
    return iw * ih / (aw * ah + bw * bh - iw * ih)


def _inside_share(box: tuple[float, ...]) -> float:
    x, y, w, h = box
    return max(0.0, min(x + w, 1) - max(x, 0)) * max(0.0, min(y + h, 1) - max(y, 0)) / (w * h)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `guardlink bench vision`."""
    parser = argparse.ArgumentParser(prog="guardlink bench vision", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--height", type=int, default=1080, help="rows of the clip (default 1080)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the clip (default 30)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the throughput runs; each ratio is the median of the rounds' (default 5)")
    parser.add_argument("--camera-run", metavar="CLIP", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.camera_run:
        return camera_run(args.camera_run)
    r = run(height=args.height, seconds=args.seconds, rounds=args.rounds)
    if args.json:
        print(json.dumps(r))
        return 0
    print(f"camera pipeline on a {r['width']}x{r['height']} H.264 clip at {BITRATE}bit/s, {r['frames']} frames, {r['cores']} cores")
    print(f"{'':<44}{'ms/frame':>10}{'precision':>11}{'recall':>8}{'F1':>8}")
    print(f"{'reference OpenCV pipeline (BGR, 180 rows)':<44}{r['reference_ms']:>10.3f}{r['reference_precision']:>11.3f}{r['reference_recall']:>8.3f}{r['reference_f1']:>8.3f}")
    print(f"{'guardlink motion core (Y plane, 90 rows)':<44}{r['motion_ms']:>10.3f}{r['core_precision']:>11.3f}{r['core_recall']:>8.3f}{r['core_f1']:>8.3f}")
    print(f"motion core speedup: {r['motion_speedup']}x (goal >= {GOALS['motion_speedup']}x, quality at least the reference's: "
          f"{'yes' if r['quality_at_least_reference'] else 'NO'})")
    print(f"decode only {r['decode_fps']} fps; whole pipeline {r['pipeline_fps']} fps: {r['pipeline_vs_decode']} of decode "
          f"(goal >= {GOALS['pipeline_vs_decode']}); CPU per frame {r['pipeline_cpu_vs_decode']}x decode's")
    print(f"two cameras at once: {r['two_camera_fps']} fps together, {r['two_camera_scaling']}x one camera "
          f"(goal >= {GOALS['two_camera_scaling']}x)")
    print(f"medians of {r['rounds']} rounds; pipeline/decode by round {r['pipeline_vs_decode_rounds']}, "
          f"two cameras/one by round {r['two_camera_scaling_rounds']}")
    print(f"evidence ring of {CAMERA.evidence.fps:g} JPEG frames/s, {CAMERA.evidence.width} px wide (not in the pipeline above): "
          f"+{100 * r['ring_cpu_overhead']:.0f}% capture CPU")
    print(f"goals {'met' if r['goals_met'] else 'NOT met'}   ({r['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
