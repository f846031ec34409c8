"""The camera core as pure code: downscaling, motion, tracker, zone and line rules, frame slot, ring, MJPEG parts,
camera files. Frames are made in memory; no processes."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.vision.analytics import Analytics
from edge.vision.events import CameraEvent, CameraEventKind
from edge.vision.evidence import FrameRing
from edge.vision.frameslot import LatestFrame
from edge.vision.mjpeg import StreamError, boundary_of, jpeg_parts
from edge.vision.motion import Downscaler, MotionDetector, merge_parts
from edge.vision.pipeline import CameraPipeline
from edge.vision.tracker import Track, Tracker
from guardlink.cameraconfig import (
    CameraSettings,
    MotionSettings,
    ObjectFilter,
    TrackerSettings,
    load_camera,
)
from guardlink.yamlconfig import ConfigError

SIZE = (160, 90)
REPO = Path(__file__).resolve().parent.parent


def textured(width: int = 320, height: int = 180, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(60, 200, (height // 10, width // 10), dtype=np.uint8)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def with_person(frame: np.ndarray, x: int, y: int, w: int = 12, h: int = 30, level: int = 20) -> np.ndarray:
    out = frame.copy()
    cv2.rectangle(out, (x, y), (x + w, y + h), level, -1)
    return out


def settled(background: np.ndarray, **motion: object) -> MotionDetector:
    """A motion core that has learnt `background` (320x180)."""
    core = MotionDetector(MotionSettings(learn_s=0.2, **motion), ObjectFilter(), (320, 180))
    for _ in range(15):
        assert core.detect(background, 0.04) == []
        core.learn(0.04)
    return core


def track(box: tuple[float, float, float, float], tid: int = 1, origin: tuple[float, float] | None = None) -> Track:
    x, y, w, h = box
    return Track(box=box, first_seen=0.0, last_seen=0.0, origin=origin or (x + w / 2, y + h), centre=(x + w / 2, y + h / 2), size=(w, h), id=tid, moved=True)


def test_downscaler_averages_whole_blocks_of_a_1080p_luma_plane():
    luma = np.zeros((1080, 1920), np.uint8)
    luma[:, 960:] = 200  # right half bright
    small = Downscaler((1920, 1080), (160, 90))(luma)
    assert small.shape == (90, 160)
    assert (small[:, :80] == 0).all() and (small[:, 80:] == 200).all()
    noisy = np.random.default_rng(1).normal(128, 20, (1080, 1920)).clip(0, 255).astype(np.uint8)
    assert Downscaler((1920, 1080), (160, 90))(noisy).std() < 20 / 5  # dozens of pixels averaged per output pixel


def test_motion_core_boxes_a_moving_object_and_ignores_a_still_scene():
    background = textured()
    core = settled(background)
    boxes = core.detect(with_person(background, 100, 60), 0.04)
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    assert abs(x - 50) <= 2 and abs(y - 30) <= 2 and abs(w - 6) <= 3 and abs(h - 15) <= 3  # detection size is half of 320x180


def test_lighting_step_and_ir_switch_are_absorbed_not_reported():
    background = textured()
    core = settled(background)
    brighter = cv2.convertScaleAbs(background, alpha=1.4, beta=15)
    infrared = cv2.LUT(background, (255 * (np.arange(256) / 255) ** 0.6).astype(np.uint8))
    for frame in [brighter] * 10 + [infrared] * 10:
        assert core.detect(frame, 0.04) == []
        core.learn(0.04)
    assert core.lighting_changes == 2 and core.relearns == 0


def test_a_one_frame_flash_leaves_the_background_alone():
    background = textured()
    core = settled(background)
    before = core.background.copy()
    assert core.detect(cv2.convertScaleAbs(background, alpha=1.6, beta=60), 0.04) == []
    core.learn(0.04)
    assert np.array_equal(core.background, before)
    assert core.detect(background, 0.04) == []


def test_motion_mask_hides_motion_inside_it():
    background = textured()
    core = settled(background, mask=[[(0.25, 0.0), (0.5, 0.0), (0.5, 1.0), (0.25, 1.0)]])
    assert core.detect(with_person(background, 100, 60), 0.04) == []  # x 100..112 of 320 is inside the mask
    assert len(core.detect(with_person(background, 250, 60), 0.04)) == 1


def test_parts_of_one_person_are_joined_but_neighbours_stay_apart():
    head, legs = (10, 10, 6, 5), (9, 17, 8, 10)  # stacked with a 2-pixel gap
    assert merge_parts([head, legs]) == [(9, 10, 8, 17)]
    assert merge_parts([(10, 10, 6, 15), (30, 10, 6, 15)]) == [(10, 10, 6, 15), (30, 10, 6, 15)]


def test_tracker_keeps_one_id_through_a_short_gap_and_confirms_after_min_hits():
    tracker = Tracker(TrackerSettings(min_hits=3, max_missed_s=1.0))
    confirmed: list[list[int | None]] = []
    for i in range(30):
        boxes = [] if 10 <= i < 15 else [(10 + 2 * i, 40, 6, 15)]  # missing for 0.2 s
        confirmed.append([t.id for t in tracker.update(boxes, i * 0.04, 0.04)])
    assert confirmed[0] == [] and confirmed[1] == [] and confirmed[2] == [1]
    assert all(ids == [1] for ids in confirmed[2:])


def test_tracker_keeps_two_objects_apart_when_they_cross():
    tracker = Tracker(TrackerSettings(min_hits=2))
    for i in range(40):
        a, b = (10 + 3 * i, 40, 6, 15), (130 - 3 * i, 60, 6, 15)  # different rows: they never merge
        tracks = tracker.update([a, b], i * 0.04, 0.04)
    by_id = {t.id: t.box for t in tracks}
    assert set(by_id) == {1, 2}
    assert by_id[1][0] > by_id[2][0]  # the left starter is now on the right: ids followed them


def run_analytics(camera: CameraSettings, foot_path: list[tuple[float, float]], fps: float = 10.0) -> list[CameraEvent]:
    analytics = Analytics(camera, SIZE)
    events = []
    for i, (fx, fy) in enumerate(foot_path):
        x, y = fx * SIZE[0] - 3, fy * SIZE[1] - 15
        events += analytics.update([track((x, y, 6, 15), origin=(foot_path[0][0] * SIZE[0], foot_path[0][1] * SIZE[1]))], i / fps, i)
    return events


def test_intrusion_counts_after_inertia_and_after_s_and_once_per_visit():
    camera = CameraSettings(id="c", zones=[{"id": "yard", "polygon": [(0.5, 0), (1, 0), (1, 1), (0.5, 1)], "inertia": 3, "intrusion": {"after_s": 1.0}, "loitering": None}])
    path = [(0.2 + 0.05 * i, 0.6) for i in range(10)] + [(0.7, 0.6)] * 30 + [(0.3, 0.6)] * 10 + [(0.7, 0.6)] * 20
    events = run_analytics(camera, path)
    assert [e.kind for e in events] == [CameraEventKind.INTRUSION, CameraEventKind.INTRUSION]  # two visits
    first_inside = next(i for i, (x, _) in enumerate(path) if x >= 0.5) / 10
    assert first_inside + 1.0 <= events[0].time <= first_inside + 1.0 + 0.15
    assert events[0].zone == "yard" and events[0].track == 1 and events[0].dwell_s >= 1.0


def test_a_foot_flickering_on_the_border_is_not_a_string_of_entries():
    camera = CameraSettings(id="c", zones=[{"id": "yard", "polygon": [(0.5, 0), (1, 0), (1, 1), (0.5, 1)], "inertia": 3, "loitering": None}])
    path = [(0.49 if i % 2 else 0.51, 0.6) for i in range(40)]
    assert run_analytics(camera, path) == []


def test_line_crossings_have_a_direction_and_only_counted_directions_fire():
    line = {"id": "fence", "points": [(0.5, 0.1), (0.5, 0.9)]}  # pointing down: side A is x > 0.5
    both = CameraSettings(id="c", zones=[{"id": "z", "polygon": [(0, 0), (0.01, 0), (0.01, 0.01)], "loitering": None}], lines=[line])
    across_and_back = [(0.3 + 0.02 * i, 0.5) for i in range(20)] + [(0.7 - 0.02 * i, 0.5) for i in range(20)]
    events = run_analytics(both, across_and_back)
    assert [(e.kind, e.line, e.direction) for e in events] == [
        (CameraEventKind.LINE_CROSSING, "fence", "b_to_a"), (CameraEventKind.LINE_CROSSING, "fence", "a_to_b")
    ]
    only_a_to_b = both.model_copy(update={"lines": [both.lines[0].model_copy(update={"direction": "a_to_b"})]})
    assert [e.direction for e in run_analytics(only_a_to_b, across_and_back)] == ["a_to_b"]
    beyond_the_end = [(0.3 + 0.02 * i, 0.95) for i in range(20)]  # passes below the line's lower end
    assert run_analytics(both, beyond_the_end) == []


def test_loitering_fires_after_its_time_and_crowding_above_its_count():
    camera = CameraSettings(
        id="c", zones=[{"id": "z", "polygon": [(0, 0), (1, 0), (1, 1), (0, 1)], "intrusion": None, "loitering": {"after_s": 3.0}, "crowding": {"max_objects": 2, "after_s": 0.5}}]
    )
    analytics = Analytics(camera, SIZE)
    loiter, crowd = [], []
    for i in range(60):
        people = [track((20 + 30 * k, 40, 6, 15), tid=k + 1) for k in range(1 if i < 20 else 3)]
        for event in analytics.update(people, i / 10, i):
            (loiter if event.kind is CameraEventKind.LOITERING else crowd).append(event)
    assert [e.track for e in loiter][:1] == [1] and 3.0 <= loiter[0].time <= 3.35
    assert len(crowd) == 1 and crowd[0].count == 3 and 2.5 <= crowd[0].time <= 2.85


def test_a_covered_camera_raises_tamper_and_clears_when_uncovered():
    camera = CameraSettings(id="c", tamper={"after_s": 1.0}, motion={"learn_s": 0.2})
    pipeline = CameraPipeline(camera, (320, 180))
    scene, dark = textured(), np.full((180, 320), 40, np.uint8)
    events = []
    for i in range(150):
        frame = dark if 50 <= i < 100 else scene
        events += [(e.kind, e.detail, i) for e in pipeline.process(frame, i * 0.04)]
    tamper = [(kind, detail) for kind, detail, _ in events if kind in (CameraEventKind.TAMPER, CameraEventKind.TAMPER_CLEARED)]
    assert tamper == [(CameraEventKind.TAMPER, "covered"), (CameraEventKind.TAMPER_CLEARED, "covered")]
    raised_at = next(i for kind, _, i in events if kind is CameraEventKind.TAMPER)
    assert 50 + 1.0 / 0.04 <= raised_at <= 50 + 1.5 / 0.04


def test_latest_frame_slot_hands_over_the_newest_frame_and_counts_the_dropped():
    slot = LatestFrame()
    for t in range(5):
        slot.writable((2, 2))[:] = t
        slot.publish(float(t))
    frame, t = slot.take(0.1)
    assert t == 4.0 and (frame == 4).all() and slot.dropped == 4
    assert slot.take(0.01) is None
    waiter = threading.Thread(target=lambda: (slot.writable((2, 2)).fill(9), slot.publish(9.0)))
    waiter.start()
    frame, t = slot.take(5)
    waiter.join()
    assert t == 9.0 and (frame == 9).all()


def test_a_paced_slot_hands_over_every_frame_in_order_and_its_writer_waits_for_the_reader():
    slot = LatestFrame(paced=True)

    def write() -> None:
        for t in range(200):
            slot.writable((2, 2)).fill(t % 256)
            slot.publish(float(t))

    writer = threading.Thread(target=write)
    writer.start()
    seen = []
    while len(seen) < 200:
        frame, t = slot.take(5)
        assert (frame == int(t) % 256).all()
        seen.append(t)
    writer.join(5)
    assert seen == [float(t) for t in range(200)] and slot.dropped == 0

    blocked = threading.Thread(target=lambda: (slot.writable((2, 2)).fill(1), slot.publish(1.0)))
    blocked.start()
    blocked.join(0.2)
    assert blocked.is_alive()  # nobody took the frame: the writer waits
    slot.close()
    blocked.join(5)
    assert not blocked.is_alive()  # closing the slot releases it


def test_frame_ring_keeps_its_rate_and_length():
    ring = FrameRing(seconds=2.0, fps=5)
    for i in range(100):
        ring.add(f"{i}".encode(), i * 0.04)  # 25 fps offered
    frames = ring.between(0, 10)
    assert 9 <= len(frames) <= 11 and frames[-1][0] - frames[0][0] <= 2.0
    assert ring.nearest(3.5)[0] == pytest.approx(3.6, abs=0.21)
    assert ring.wait_for(3.7, 0.01) and not ring.wait_for(10, 0.01)


def test_mjpeg_parts_with_and_without_content_length():
    jpeg = cv2.imencode(".jpg", textured(32, 24))[1].tobytes()
    with_length = b"".join(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n" % (len(jpeg), jpeg) for _ in range(3))
    without = b"".join(b"--frame\r\nContent-Type: image/jpeg\r\n\r\n%s\r\n" % jpeg for _ in range(2)) + b"--frame--\r\n"
    assert list(jpeg_parts(io.BytesIO(with_length), "frame")) == [jpeg] * 3
    assert list(jpeg_parts(io.BytesIO(without))) == [jpeg] * 2
    assert boundary_of('multipart/x-mixed-replace; boundary="--frame"') == "frame"
    with pytest.raises(StreamError):
        list(jpeg_parts(io.BytesIO(b"--frame\r\nContent-Length: 99999999999\r\n\r\n")))


def test_camera_file_errors_point_at_file_line_and_column(tmp_path):
    path = tmp_path / "gate.yaml"
    path.write_text("zones:\n  - id: yard\n    polygon: [[0, 0], [1, 0], [1, 1.5]]\n  - id: yard\n    polygon: [[0, 0], [1, 0], [1, 1]]\nlines:\n  - {id: l, points: [[0.1, 0.1], [0.9, 0.9]], direction: north}\n")
    with pytest.raises(ConfigError) as caught:
        load_camera(path)
    assert caught.value.messages == [
        f"{path}:3:14: zones.0.polygon: point [1.0, 1.5] is outside the frame; coordinates are fractions of the frame, 0 to 1",
        f"{path}:4:9: camera 'camera' has two zones with id 'yard'",
        f"{path}:7:58: lines.0.direction: Input should be 'a_to_b', 'b_to_a' or 'both'",
    ]
    path.write_text("zones:\n  - {id: yard, polygon: [[0, 0], [1, 0], [1, 1]]}\n  - {id: yard, polygon: [[0, 0], [1, 0], [1, 1]]}\n")
    with pytest.raises(ConfigError) as caught:
        load_camera(path)
    assert caught.value.messages == [f"{path}:3:10: camera 'camera' has two zones with id 'yard'"]


def test_the_example_camera_file_loads():
    camera = load_camera(REPO / "firmware_configs" / "cameras" / "gate.yaml")
    assert camera.id == "cam-gate" and [z.id for z in camera.zones] == ["drive"] and camera.lines[0].direction == "both"
