"""`guardlink vision analyze` and `guardlink bench vision`, run as a user runs them (separate processes)."""

from __future__ import annotations

import json
import subprocess

from bench.scenes import Scene, Walker

from conftest import GUARDLINK, REPO

EVENT_KEYS = {"kind", "camera", "time", "frame", "zone", "line", "track", "box", "direction", "count", "dwell_s", "detail"}


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*GUARDLINK, *args], check=False, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def test_vision_analyze_prints_one_json_event_per_line_for_the_configured_zones_and_lines(tmp_path):
    across = Walker(((1.5, 0.02, 0.7), (9, 0.98, 0.75)))  # crosses the gate line left to right, through the yard
    clip = Scene(640, 360, 15, 10, [across], seed=2).write(tmp_path / "gate.mp4")
    config = tmp_path / "gate.yaml"
    config.write_text(
        "id: gate\n"
        "zones:\n  - {id: yard, polygon: [[0.4, 0.4], [1, 0.4], [1, 1], [0.4, 1]], loitering: null}\n"
        "lines:\n  - {id: gate-line, points: [[0.25, 0.3], [0.25, 1]], direction: b_to_a}\n"
    )
    result = run("vision", "analyze", str(clip), "--camera-config", str(config), "--json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(set(e) == EVENT_KEYS and e["camera"] == "gate" for e in events)
    assert [(e["kind"], e["zone"] or e["line"]) for e in events] == [("line_crossing", "gate-line"), ("intrusion", "yard")]
    crossing, intrusion = events
    assert crossing["direction"] == "b_to_a" and crossing["track"] == intrusion["track"]
    assert 0 < crossing["time"] < intrusion["time"] < 9 and len(intrusion["box"]) == 4
    assert "150 frames" in result.stderr


def test_vision_analyze_without_a_config_watches_the_whole_frame(tmp_path):
    clip = Scene(640, 360, 15, 6, [Walker(((1.5, 0.5, 0.99), (5.5, 0.5, 0.5)))], seed=3).write(tmp_path / "clip.mp4")
    result = run("vision", "analyze", str(clip), "--json")
    assert result.returncode == 0, result.stderr
    assert [(e["kind"], e["zone"], e["camera"]) for e in map(json.loads, result.stdout.splitlines())] == [("intrusion", "frame", "clip")]


def test_vision_analyze_rejects_a_bad_camera_file_with_its_position_and_a_missing_video(tmp_path):
    config = tmp_path / "cam.yaml"
    config.write_text("zones:\n  - {id: yard, polygon: [[0, 0], [1, 0]]}\n")
    clip = Scene(64, 36, 5, 1, seed=1).write(tmp_path / "clip.mp4")
    result = run("vision", "analyze", str(clip), "--camera-config", str(config))
    assert result.returncode == 1
    assert result.stderr.strip() == f"{config}:2:25: zones.0.polygon: List should have at least 3 items after validation, not 2"
    missing = run("vision", "analyze", str(tmp_path / "nope.mp4"))
    assert missing.returncode == 1 and "no such file" in missing.stderr


def test_vision_benchmark_reports_every_figure_at_reduced_size():
    result = run("bench", "vision", "--json", "--height", "180", "--seconds", "4", "--rounds", "1", timeout=300)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    for key in ("motion_speedup", "pipeline_vs_decode", "two_camera_scaling", "reference_ms", "motion_ms", "decode_fps", "pipeline_fps",
                "two_camera_fps", "core_f1", "reference_f1", "pipeline_cpu_vs_decode"):
        assert isinstance(figures[key], float) and figures[key] > 0, key
    assert figures["height"] == 180 and figures["frames"] == 100 and isinstance(figures["goals_met"], bool)


def test_a_static_textured_test_pattern_raises_no_camera_tamper(tmp_path):
    # Issue 14, item 10: a false `camera_tamper` (moved / defocused) was reported on a synthetic clip with a static
    # textured background. Not reproduced (testsrc and testsrc2 at several sizes and bitrates, with noise, stills);
    # this keeps the plain case honest: the test pattern's counter moves, its texture and framing do not.
    clip = tmp_path / "testsrc.mp4"
    made = subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=duration=12:size=640x360:rate=15",
         "-vf", "noise=alls=6:allf=t", "-c:v", "libx264", "-b:v", "300k", "-pix_fmt", "yuv420p", str(clip)],
        check=False, capture_output=True, text=True, timeout=60,
    )
    assert made.returncode == 0, made.stderr
    result = run("vision", "analyze", str(clip), "--json")
    assert result.returncode == 0, result.stderr
    assert [e for e in map(json.loads, result.stdout.splitlines()) if "tamper" in e["kind"]] == []
