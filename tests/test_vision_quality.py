"""Detection quality on labelled clips made here with numpy, OpenCV and ffmpeg (H.264), run through the whole
pipeline as `guardlink vision analyze` runs it: ffmpeg capture, motion core, tracker, zone and line rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.scenes import (
    YARD_LINE,
    YARD_ZONE,
    Scene,
    Walker,
    precision_recall,
    score,
    yard_walkers,
)
from edge.vision.events import CameraEvent, CameraEventKind
from edge.vision.recorded import analyze_video
from guardlink.cameraconfig import CameraSettings

WIDTH, HEIGHT, FPS = 640, 360, 15
TOLERANCE_S = 1.5  # inertia and track confirmation delay events by a few frames
MIN_DEPTH = 0.03  # a stay that never got this far inside a zone (a graze) is held against nobody
MIN_STAY_S = 0.6
LINE_END = 0.05  # crossings this close to a line's end count neither way
YARD = CameraSettings(
    id="yard", zones=[{"id": "yard", "polygon": YARD_ZONE, "loitering": None}], lines=[{"id": "fence", "points": YARD_LINE}]
)


def analyse(scene: Scene, camera: CameraSettings, path: Path) -> list[CameraEvent]:
    return list(analyze_video(str(scene.write(path)), camera))


def of(events: list[CameraEvent], kind: CameraEventKind) -> list[CameraEvent]:
    return [e for e in events if e.kind is kind]


@pytest.fixture(scope="module")
def yard(tmp_path_factory: pytest.TempPathFactory) -> tuple[Scene, list[CameraEvent]]:
    """Three minutes of people crossing a yard, with a lighting step at 60 s, an IR switch at 120 s and a flash at 150 s."""
    scene = Scene(WIDTH, HEIGHT, FPS, 180, yard_walkers(180, seed=4), seed=4, lighting=[(60, 1.35, 10)], ir_at=120, flashes=[150])
    return scene, analyse(scene, YARD, tmp_path_factory.mktemp("yard") / "yard.mp4")


def test_intrusion_precision_and_recall_are_at_least_95_percent(yard):
    scene, events = yard
    stays = scene.zone_stays(YARD_ZONE)
    clear = [("yard", t) for _, t, left, depth in stays if depth >= MIN_DEPTH and left - t >= MIN_STAY_S]
    marginal = [("yard", t) for _, t, left, depth in stays if depth < MIN_DEPTH or left - t < MIN_STAY_S]
    found = [(e.zone, e.time) for e in of(events, CameraEventKind.INTRUSION)]
    tp, fp, fn = score(found, clear, marginal, TOLERANCE_S)
    precision, recall = precision_recall(tp, fp, fn)
    assert len(clear) >= 20
    assert precision >= 0.95 and recall >= 0.95, f"intrusion precision {precision:.3f} recall {recall:.3f} ({tp} tp, {fp} fp, {fn} fn)"


def test_line_crossing_precision_and_recall_are_at_least_95_percent_with_the_right_direction(yard):
    scene, events = yard
    crossings = scene.line_crossings(*YARD_LINE)
    clear = [(direction, t) for _, t, direction, along in crossings if LINE_END <= along <= 1 - LINE_END]
    marginal = [(direction, t) for _, t, direction, along in crossings if not LINE_END <= along <= 1 - LINE_END]
    found = [(e.direction, e.time) for e in of(events, CameraEventKind.LINE_CROSSING)]
    tp, fp, fn = score(found, clear, marginal, TOLERANCE_S)  # the direction is part of what must match
    precision, recall = precision_recall(tp, fp, fn)
    assert len(clear) >= 20 and {d for d, _ in clear} == {"a_to_b", "b_to_a"}
    assert precision >= 0.95 and recall >= 0.95, f"line crossing precision {precision:.3f} recall {recall:.3f} ({tp} tp, {fp} fp, {fn} fn)"
    assert all(e.line == "fence" and e.track is not None and e.box is not None for e in of(events, CameraEventKind.LINE_CROSSING))


def test_lighting_step_ir_switch_and_flash_cause_no_intrusion(tmp_path):
    scene = Scene(WIDTH, HEIGHT, FPS, 30, [], seed=4, lighting=[(6, 1.4, 15), (12, 0.75, -10)], ir_at=18, flashes=[24])
    events = analyse(scene, CameraSettings(id="dark"), tmp_path / "lighting.mp4")  # the whole frame is one zone
    assert of(events, CameraEventKind.INTRUSION) == []


def test_loitering_fires_after_its_time_and_not_before(tmp_path):
    zone = [(0.3, 0.5), (0.7, 0.5), (0.7, 0.95), (0.3, 0.95)]
    stays = Walker(((1, 0.02, 0.7), (4, 0.4, 0.7), (7, 0.6, 0.8), (10, 0.45, 0.9), (13, 0.55, 0.75), (15, 0.98, 0.7)))
    passes = Walker(((16, 0.02, 0.6), (19, 0.45, 0.65), (21, 0.98, 0.6)), colour=(170, 90, 40))
    scene = Scene(WIDTH, HEIGHT, FPS, 24, [stays, passes], seed=5)
    camera = CameraSettings(id="c", zones=[{"id": "hall", "polygon": zone, "intrusion": None, "loitering": {"after_s": 5}}])
    events = analyse(scene, camera, tmp_path / "loiter.mp4")
    (_, entered, _, _), (_, passed_in, passed_out, _) = scene.zone_stays(zone)
    loitering = of(events, CameraEventKind.LOITERING)
    assert passed_out - passed_in < 5  # the passer-by stays shorter than the rule's time
    assert len(loitering) == 1, loitering
    assert entered + 5 <= loitering[0].time <= entered + 5 + 1.0
    assert loitering[0].zone == "hall" and loitering[0].dwell_s >= 5


@pytest.mark.parametrize(("what", "change"), [("covered", "cover_at"), ("defocused", "defocus_at"), ("moved", "moved_at")])
def test_tamper_fires_when_covered_defocused_or_moved(tmp_path, what, change):
    walker = Walker(((1, 0.1, 0.8), (9, 0.9, 0.85)))
    scene = Scene(WIDTH, HEIGHT, FPS, 14, [walker], seed=7, **{change: 6.0})
    events = analyse(scene, CameraSettings(id="c", tamper={"after_s": 3}), tmp_path / f"{what}.mp4")
    tamper = of(events, CameraEventKind.TAMPER)
    assert [e.detail for e in tamper] == [what]
    assert 6.0 + 3 <= tamper[0].time <= 6.0 + 1.5 + 3 + 1.0  # covering takes 1.5 s to finish


def test_crowding_fires_when_more_people_than_allowed_stand_in_a_zone(tmp_path):
    spots = [(0.3, 0.6), (0.5, 0.62), (0.7, 0.6), (0.4, 0.85), (0.6, 0.88)]
    starts = [(0.02, 0.6), (0.5, 0.99), (0.98, 0.6), (0.02, 0.9), (0.98, 0.9)]
    people = [
        Walker(((1 + 1.5 * i, *start), (5 + 1.5 * i, *spot), (16, *spot), (19, *start)), colour=colour)
        for i, (start, spot, colour) in enumerate(zip(starts, spots, [(60, 50, 170), (170, 90, 40), (40, 160, 60), (200, 200, 210), (30, 30, 30)]))
    ]
    scene = Scene(WIDTH, HEIGHT, FPS, 20, people, seed=8)
    zone = {"id": "square", "polygon": [(0.2, 0.45), (0.85, 0.45), (0.85, 1), (0.2, 1)], "loitering": None, "crowding": {"max_objects": 3, "after_s": 1}}
    events = analyse(scene, CameraSettings(id="c", zones=[zone]), tmp_path / "crowd.mp4")
    crowding = of(events, CameraEventKind.CROWDING)
    fourth_arrives = 5 + 1.5 * 3
    assert len(crowding) == 1 and crowding[0].count >= 4 and crowding[0].zone == "square"
    assert fourth_arrives - 2 <= crowding[0].time <= fourth_arrives + 3
