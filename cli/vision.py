"""`guardlink vision analyze VIDEO [--camera-config FILE] [--json]`: the whole camera pipeline on a video file."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path, PurePosixPath


def register(commands: argparse._SubParsersAction) -> None:
    vision = commands.add_parser("vision", help="camera analytics")
    actions = vision.add_subparsers(dest="vision_command", required=True, metavar="ACTION")
    analyze = actions.add_parser(
        "analyze", help="run the camera pipeline on a video file and print its events",
        description="Run capture, motion core, tracker and zone/line analytics on a video file, as fast as it decodes. "
        "Event times are positions in the video. Schedules do not apply: every rule is armed.",
    )
    analyze.add_argument("video", help="video file (anything ffmpeg reads), or a stream: rtsp://, rtsps://, http(s):// (MJPEG)")
    analyze.add_argument(
        "--camera-config", type=Path, default=None, metavar="FILE",
        help="camera YAML (zones, lines, rules, motion ...); without it the whole frame is one zone with default intrusion and loitering",
    )
    analyze.add_argument("--json", action="store_true", help="one JSON event per line (kind, camera, zone, line, track, box, time ...)")
    analyze.set_defaults(run=run_analyze)


def run_analyze(args: argparse.Namespace) -> int:
    from edge.vision.capture import SourceError
    from edge.vision.recorded import Progress, analyze_video
    from guardlink.cameraconfig import CameraSettings, load_camera

    stream = "://" in args.video  # a URL goes to the capture as it is; Path() would fold rtsp:// into rtsp:/
    camera_id = re.sub(r"[^a-z0-9_-]+", "-", PurePosixPath(args.video.rstrip("/")).stem.lower()).strip("-_")[:63] or "camera"
    camera = load_camera(args.camera_config, camera_id) if args.camera_config else CameraSettings(id=camera_id)
    if not stream and not Path(args.video).is_file():
        print(f"guardlink vision analyze: no such file {args.video!r} (streams are written rtsp://host/path)", file=sys.stderr)
        return 1
    progress = Progress()
    started = time.perf_counter()
    events = 0
    try:
        for event in analyze_video(args.video, camera, progress):
            events += 1
            if args.json:
                print(json.dumps(event.to_dict()), flush=True)
            else:
                where = event.zone or event.line or ""
                extra = " ".join(f"{k}={v}" for k, v in (("track", event.track), ("direction", event.direction), ("count", event.count), ("detail", event.detail)) if v is not None)
                print(f"{event.time:9.2f} s  {event.kind.value:<22} {where:<14} {extra}", flush=True)
    except SourceError as exc:
        print(f"guardlink vision analyze: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader stopped early (`| head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    elapsed = time.perf_counter() - started
    width, height = progress.frame_size
    print(
        f"{events} events in {progress.frames} frames ({progress.frames / progress.fps:.1f} s of video at {progress.fps:g} fps, "
        f"analysed at {width}x{height}, detection at {progress.detection_size[0]}x{progress.detection_size[1]}) "
        f"in {elapsed:.1f} s: {progress.frames / max(elapsed, 1e-9):.0f} frames/s",
        file=sys.stderr,
    )
    return 0
