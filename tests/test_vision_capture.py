"""Live camera sources against real servers on free loopback ports: RTSP (ffmpeg pushing, the camera listening),
HTTP MJPEG, MQTT JPEG payloads; reconnection and camera_offline; the worker process and its evidence files."""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import cv2
import paho.mqtt.client as mqtt

from bench.scenes import Scene, Walker
from bench.servers import stop_process
from edge.embedded_broker import free_tcp_port
from edge.vision.events import CameraEvent, CameraEventKind
from edge.vision.process import CameraProcess
from edge.vision.worker import CameraWorker
from guardlink.cameraconfig import CameraSettings
from guardlink.models import Evidence

from conftest import wait_until

FPS = 15


def walker_scene(seconds: float = 8) -> Scene:
    """Someone walking in from the left a second and a half in: an intrusion in the whole-frame zone."""
    return Scene(640, 360, FPS, seconds, [Walker(((1.5, 0.02, 0.7), (seconds - 1, 0.9, 0.8)))], seed=9)


class Messages:
    """What a worker emitted, with waits on conditions."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self._cond = threading.Condition()

    def append(self, message: dict[str, Any]) -> None:
        with self._cond:
            self.items.append(message)
            self._cond.notify_all()

    def kinds(self) -> list[str]:
        with self._cond:
            return [m["event"]["kind"] for m in self.items if "event" in m]

    def wait(self, condition: Callable[[list[str]], bool], timeout_s: float, what: str) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: condition([m["event"]["kind"] for m in self.items if "event" in m]), timeout_s):
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; events: {self.kinds()}")


@contextmanager
def running(worker: CameraWorker) -> Iterator[CameraWorker]:
    thread = threading.Thread(target=worker.run, name="camera-worker")
    thread.start()
    try:
        yield worker
    finally:
        worker.stop.set()
        thread.join(20)
        assert not thread.is_alive(), "the camera worker did not stop"


@contextmanager
def pushing(clip: Path, url: str, worker: CameraWorker, timeout_s: float = 30) -> Iterator[subprocess.Popen]:
    """ffmpeg pushing the clip (in real time, looping) to the camera's listening RTSP address, retried until taken."""
    connects = worker.connects
    deadline = time.monotonic() + timeout_s
    command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1", "-i", str(clip),
               "-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp", url]
    pusher = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while worker.connects == connects:  # the listener may still be starting: the push is refused, try again
            if time.monotonic() > deadline:
                raise AssertionError(f"the camera never took the stream pushed to {url}")
            if pusher.poll() is not None:
                pusher = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.05)
        yield pusher
    finally:
        stop_process(pusher)


def test_rtsp_camera_gives_events_goes_offline_when_the_stream_stops_and_comes_back(tmp_path):
    clip = walker_scene().write(tmp_path / "cam.mp4")
    url = f"rtsp://127.0.0.1:{free_tcp_port()}/cam"
    messages = Messages()
    camera = CameraSettings(id="gate", source=url, listen=True, offline_after_s=1.0)
    with running(CameraWorker(camera, messages.append)) as worker:
        with pushing(clip, url, worker):
            messages.wait(lambda k: "intrusion" in k, 30, "an intrusion from the RTSP stream")
        messages.wait(lambda k: k[-1] == "camera_offline", 15, "camera_offline after the stream stopped")
        with pushing(clip, url, worker):
            messages.wait(lambda k: k[-1] != "camera_offline" and "camera_online" in k[k.index("intrusion"):], 30, "camera_online")
            messages.wait(lambda k: "intrusion" in k[len(k) - k[::-1].index("camera_online"):], 30, "an intrusion after reconnecting")
    assert worker.connects >= 2


class MjpegHandler(http.server.BaseHTTPRequestHandler):
    """Serves the scene as an endless multipart/x-mixed-replace MJPEG stream, paced at the scene's rate."""

    jpegs: ClassVar[list[bytes]] = []

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        try:
            for i in range(100_000):
                jpeg = self.jpegs[i % len(self.jpegs)]
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n" % (len(jpeg), jpeg))
                time.sleep(1 / FPS)  # the camera's frame rate
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args: object) -> None:
        pass


def scene_jpegs(scene: Scene) -> list[bytes]:
    return [cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes() for frame in scene.frames()]


def test_http_mjpeg_camera_gives_events_and_fills_the_ring_with_its_own_jpegs(tmp_path):
    MjpegHandler.jpegs = scene_jpegs(walker_scene())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), MjpegHandler)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    messages = Messages()
    try:
        camera = CameraSettings(id="lobby", source=f"http://127.0.0.1:{server.server_address[1]}/video.mjpg")
        with running(CameraWorker(camera, messages.append, evidence_dir=tmp_path / "evidence")) as worker:
            messages.wait(lambda k: "intrusion" in k, 30, "an intrusion from the MJPEG stream")
            ring = worker.ring.between(0, time.time() + 1)
    finally:
        server.shutdown()
        server.server_close()
    assert ring and all(jpeg in MjpegHandler.jpegs for _, jpeg in ring)  # the camera's JPEGs, not re-encoded ones


def test_mqtt_jpeg_camera_gives_events(mosquitto):
    jpegs = scene_jpegs(walker_scene())
    stop = threading.Event()
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    publisher.connect(mosquitto.host, mosquitto.port)
    publisher.loop_start()

    def publish() -> None:
        i = 0
        while not stop.wait(1 / FPS):
            publisher.publish("cameras/yard/jpeg", jpegs[i % len(jpegs)], qos=0)
            i += 1

    feeder = threading.Thread(target=publish, daemon=True)
    feeder.start()
    messages = Messages()
    try:
        camera = CameraSettings(id="yard", source="mqtt:cameras/yard/jpeg")
        with running(CameraWorker(camera, messages.append, broker=mosquitto)):
            messages.wait(lambda k: "intrusion" in k, 30, "an intrusion from JPEG payloads on MQTT")
    finally:
        stop.set()
        feeder.join(5)
        publisher.disconnect()
        publisher.loop_stop()


async def test_worker_process_sends_events_and_writes_the_evidence_it_is_asked_for(tmp_path):
    clip = walker_scene(10).write(tmp_path / "cam.mp4")
    camera = CameraSettings(id="gate", source=str(clip), evidence={"before_s": 2, "after_s": 2})
    events: list[CameraEvent] = []
    files: list[tuple[str, Evidence]] = []
    process = CameraProcess(camera, on_event=events.append, on_evidence=lambda ref, f: files.append((ref, f)), evidence_dir=tmp_path / "evidence")
    task = asyncio.create_task(process.run())
    try:
        await wait_until(lambda: any(e.kind is CameraEventKind.INTRUSION for e in events), 30, "an intrusion from the worker process")
        intrusion = next(e for e in events if e.kind is CameraEventKind.INTRUSION)
        process.request_evidence("019a-incident", intrusion.time, intrusion.box)
        await wait_until(lambda: len(files) == 2, 30, "a snapshot and a clip")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert process._process.returncode is not None  # the worker is gone with the task
    (ref, snapshot), (_, clip_file) = files
    assert ref == "019a-incident" and (snapshot.kind, clip_file.kind) == ("snapshot", "clip")
    for file in (snapshot, clip_file):
        data = await asyncio.to_thread(Path(file.path).read_bytes)
        assert len(data) == file.bytes and hashlib.sha256(data).hexdigest() == file.sha256
    assert cv2.imread(snapshot.path) is not None and snapshot.media_type == "image/jpeg"
    assert abs(snapshot.start.timestamp() - intrusion.time) <= 0.5
    video = cv2.VideoCapture(clip_file.path)
    frames = int(video.get(cv2.CAP_PROP_FRAME_COUNT))
    video.release()
    assert clip_file.media_type == "video/mp4" and frames >= 8  # 4 s at the ring's 4 frames a second, give or take
    assert clip_file.start.timestamp() <= intrusion.time - 1.5 and clip_file.end.timestamp() >= intrusion.time + 1.5
