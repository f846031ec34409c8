"""Camera capture: a source's frames as luma planes of one size, ready for the motion core.

- Video (rtsp://, rtsps://, files): an ffmpeg subprocess decodes and emits only the Y plane (the luma plane is
  the grey image; colour conversion at full size is wasted work), already scaled to the detection size,
  as a YUV4MPEG2 stream on a socket, which carries its own frame size and rate. When the ring needs JPEGs, a
  second output of the same decode carries them at the ring's rate and width on another pipe. An rtsp://
  camera with `listen` set pushes its stream to that address instead of being pulled from.
- JPEG (http(s):// MJPEG streams, mqtt:<topic> payloads on the site broker): each JPEG is decoded straight
  to a reduced greyscale image, so libjpeg skips most of the work; the original JPEGs feed the ring.
- Without ffmpeg installed, cv2.VideoCapture reads video sources.

A source is made without blocking; `start` waits for the stream (its first frame or header) and `read_into`
for each next frame. `close` from another thread ends either.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from edge.vision.mjpeg import StreamError, boundary_of, jpeg_parts
from gateway.connection import PahoClient, PahoMessage, threaded_client
from guardlink.cameraconfig import CameraSettings
from guardlink.siteconfig import BrokerUrl

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
SOCKET_BYTES = 4 << 20  # room for a batch of frames in flight
FILE_BATCH = 32  # frames per read when a file is analysed as fast as it decodes
FRAME = b"FRAME\n"  # YUV4MPEG2's frame marker (ffmpeg adds no frame parameters)
JpegSink = Callable[[bytes, float], None]  # receives ring frames: JPEG bytes and their time
_REDUCED = {8: cv2.IMREAD_REDUCED_GRAYSCALE_8, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4, 2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 1: cv2.IMREAD_GRAYSCALE}


class SourceError(Exception):
    """A source could not be opened or read; the message says which and why."""


class FrameSource(Protocol):
    """Frames of one camera, all of `shape` (rows, columns) once started."""

    shape: tuple[int, int]
    fps: float | None  # the stream's nominal rate, when it declares one

    def start(self) -> None:
        """Wait for the stream; SourceError if it does not come."""
        ...

    def read_into(self, out: np.ndarray) -> bool:
        """Fill `out` with the next frame; False when the stream has ended."""
        ...

    def close(self) -> None:
        """Stop; `start` or `read_into` blocked in another thread returns."""
        ...


def open_source(
    camera: CameraSettings,
    *,
    source: str | None = None,
    live: bool = True,
    loop: bool = False,
    ring: JpegSink | None = None,
    broker: BrokerUrl | None = None,
    clock: Callable[[], float] = time.time,
) -> FrameSource:
    """The source of a camera (or `source`, which overrides its configured one), not started yet.

    `live` reads files at their own rate, looping, as a camera would deliver them; otherwise a file is read
    once, as fast as it decodes (`loop`: forever, as benchmarks load the machine). `ring` receives JPEG frames for evidence. `broker` is the site broker that
    mqtt: sources subscribe on.
    """
    url = source or camera.source
    if not url:
        raise SourceError(f"camera {camera.id!r} has no source")
    rows = camera.motion.frame_height
    if url.startswith("mqtt:"):
        if broker is None:
            raise SourceError(f"camera {camera.id!r} reads MQTT topic {url[5:]!r} but no broker was given")
        return MqttJpegSource(broker, url.removeprefix("mqtt:").lstrip("/"), rows, camera, ring, clock)
    if url.startswith(("http://", "https://")):
        return HttpMjpegSource(url, rows, camera, ring, clock)
    if not url.startswith(("rtsp://", "rtsps://")) and not os.path.exists(url):
        raise SourceError(f"camera {camera.id!r}: no such file {url!r}")
    if shutil.which("ffmpeg"):
        return FfmpegSource(url, rows, camera, live=live, loop=loop, ring=ring, clock=clock)
    log.warning("event=ffmpeg_missing camera=%s fallback=opencv", camera.id)
    return OpenCvSource(url, rows, camera, ring, clock)


class FfmpegSource:
    """An ffmpeg subprocess decoding a video source to scaled Y planes (and ring JPEGs when asked)."""

    def __init__(
        self,
        url: str,
        rows: int | None,
        camera: CameraSettings,
        *,
        live: bool,
        ring: JpegSink | None,
        clock: Callable[[], float],
        loop: bool = False,
    ) -> None:
        """`rows` of the frames it emits, the aspect ratio kept; None for the source's own size."""
        self.url = url
        self.camera = camera
        self.shape = (0, 0)
        self.fps: float | None = None
        self._clock = clock
        command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-threads", str(camera.decode_threads)]
        if url.startswith(("rtsp://", "rtsps://")):
            command += ["-rtsp_transport", "tcp", "-timeout", str(int(CONNECT_TIMEOUT_S * 1e6))]
            if camera.listen:
                command += ["-rtsp_flags", "listen"]
        elif live:
            command += ["-re", "-stream_loop", "-1"]  # a file as a camera: its own rate, forever
        elif loop:
            command += ["-stream_loop", "-1"]
        command += ["-i", url, "-filter_threads", "1"]
        # Scale first, then take the Y plane of the small frame: copying the full-size plane costs more than the scaling.
        luma = f"scale=-2:{rows}:flags=fast_bilinear,format=yuv420p,extractplanes=y" if rows else "extractplanes=y"
        if camera.detect_fps:
            luma = f"fps={camera.detect_fps}," + luma
        ring_read = ring_write = None
        if ring is None:
            command += ["-map", "0:v:0", "-vf", luma, "-f", "yuv4mpegpipe", "pipe:1"]
        else:
            ring_read, ring_write = os.pipe()
            evidence = camera.evidence
            # Only the ring's frames are scaled (fps first); area scaling keeps them sharp at a fraction of bicubic's cost.
            command += [
                "-filter_complex", f"[0:v:0]split=2[a][b];[a]{luma}[luma];[b]fps={evidence.fps},scale={evidence.width}:-2:flags=area[ring]",
                "-map", "[luma]", "-f", "yuv4mpegpipe", "pipe:1",
                "-map", "[ring]", "-c:v", "mjpeg", "-q:v", str(_mjpeg_scale(evidence.quality)), "-f", "mpjpeg", f"pipe:{ring_write}",
            ]
        # A socket rather than a pipe: MSG_WAITALL lets a read sleep until whole frames are in, so this side wakes once
        # per frame (live) or per batch of frames (files, read as fast as they decode), not per chunk ffmpeg writes.
        self._socket, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BYTES)
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=theirs.fileno(), stderr=subprocess.PIPE, pass_fds=(ring_write,) if ring_write else ()
        )
        theirs.close()
        self._batch = 1 if live else FILE_BATCH
        self._records = bytearray()  # frames read but not handed out yet: "FRAME\n" and the plane, each
        self._next = self._count = 0
        self._stderr: list[bytes] = []
        threading.Thread(target=self._drain_stderr, name=f"ffmpeg-log-{camera.id}", daemon=True).start()
        if ring_write is not None:
            os.close(ring_write)
            threading.Thread(target=self._read_ring, args=(ring_read, ring), name=f"ring-{camera.id}", daemon=True).start()

    def start(self) -> None:
        header = self._header()
        if not header.startswith(b"YUV4MPEG2 "):
            self.close()
            raise SourceError(f"camera {self.camera.id!r}: ffmpeg could not read {self.url!r}: {self.error() or 'no output'}")
        fields = {part[:1]: part[1:] for part in header.split()[1:]}
        if fields.get(b"C", b"mono") != b"mono":
            self.close()
            raise SourceError(f"camera {self.camera.id!r}: ffmpeg sent colour frames ({fields[b'C']!r}), expected the Y plane")
        self.shape = (int(fields[b"H"]), int(fields[b"W"]))
        numerator, _, denominator = fields.get(b"F", b"0:1").partition(b":")
        self.fps = int(numerator) / int(denominator or b"1") if int(numerator) else None
        self._records = bytearray(self._batch * (len(FRAME) + self.shape[0] * self.shape[1]))

    def read_into(self, out: np.ndarray) -> bool:
        if self._next == self._count and not self._fill():
            return False
        record = len(self._records) // self._batch
        start = self._next * record
        self._next += 1
        if self._records[start : start + len(FRAME)] != FRAME:
            log.error("event=ffmpeg_stream_garbled camera=%s", self.camera.id)
            return False
        np.copyto(out, np.frombuffer(self._records, np.uint8, record - len(FRAME), start + len(FRAME)).reshape(out.shape))
        return True

    def _fill(self) -> bool:
        """Read the next batch of frames (fewer at the end of the stream); False when none is left."""
        view, got = memoryview(self._records), 0
        try:
            while got < len(view):
                count = self._socket.recv_into(view[got:], len(view) - got, socket.MSG_WAITALL)
                if not count:
                    break
                got += count
        except OSError:  # closed from another thread
            return False
        self._next, self._count = 0, got // (len(self._records) // self._batch)
        return self._count > 0

    def _header(self) -> bytes:
        """The YUV4MPEG2 header line (b"" when the stream ends before it)."""
        line = b""
        try:
            while not line.endswith(b"\n") and len(line) < 512:
                chunk = self._socket.recv(1)
                if not chunk:
                    break
                line += chunk
        except OSError:
            return b""
        return line

    def cpu_seconds(self) -> float:
        """CPU time ffmpeg has used so far (0 where /proc is not there to tell)."""
        try:
            fields = Path(f"/proc/{self._process.pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    def error(self) -> str:
        """What ffmpeg said on stderr (its last lines)."""
        self._process.poll()
        return b"".join(self._stderr[-5:]).decode(errors="replace").strip()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)  # wakes a read blocked in another thread
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._socket.close()

    def _drain_stderr(self) -> None:
        assert self._process.stderr is not None  # started with stderr=PIPE
        for line in self._process.stderr:
            self._stderr = [*self._stderr[-20:], line]

    def _read_ring(self, fd: int, ring: JpegSink) -> None:
        with os.fdopen(fd, "rb") as stream:
            try:
                for jpeg in jpeg_parts(stream):
                    ring(jpeg, self._clock())
            except StreamError as exc:
                log.warning("event=ring_stream_broken camera=%s error=%r", self.camera.id, str(exc))


class JpegDecoder:
    """JPEG bytes to a greyscale frame of one fixed size; decodes at 1/2, 1/4 or 1/8 scale when that is enough."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.shape: tuple[int, int] | None = None
        self._flag = cv2.IMREAD_REDUCED_GRAYSCALE_8  # the first image is only looked at for its size

    def decode(self, jpeg: bytes) -> np.ndarray | None:
        """The greyscale image (reduced as far as it stays at least `rows` high); None if it is not a JPEG."""
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), self._flag)
        if image is None:
            return None
        if self.shape is None:
            full = image.shape[0] * 8
            self._flag = _REDUCED[next((r for r in (8, 4, 2) if full // r >= self.rows), 1)]
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), self._flag)
            if image is None:
                return None
            self.shape = image.shape
        return image

    def decode_into(self, jpeg: bytes, out: np.ndarray) -> bool:
        """Decode into `out` (resized if the camera changed its resolution); False if it is not a JPEG."""
        image = self.decode(jpeg)
        if image is None:
            return False
        if image.shape == out.shape:
            np.copyto(out, image)
        else:
            cv2.resize(image, (out.shape[1], out.shape[0]), dst=out, interpolation=cv2.INTER_AREA)
        return True


class _JpegSource:
    """Shared by the JPEG sources: the first image fixes the frame size; each JPEG also goes to the ring."""

    fps: float | None = None

    def __init__(self, rows: int, camera: CameraSettings, ring: JpegSink | None, clock: Callable[[], float]) -> None:
        self.camera = camera
        self.shape: tuple[int, int] = (0, 0)
        self._decoder = JpegDecoder(rows)
        self._ring = ring
        self._clock = clock
        self._pending: bytes | None = None

    def start(self) -> None:
        self._connect()
        first = self._next_jpeg()
        if first is None or self._decoder.decode(first) is None:
            self.close()
            raise SourceError(f"camera {self.camera.id!r}: no JPEG image from {self.describe()}")
        self._pending = first
        assert self._decoder.shape is not None  # set by the first decode
        self.shape = self._decoder.shape

    def read_into(self, out: np.ndarray) -> bool:
        while True:
            jpeg, self._pending = self._pending or self._next_jpeg(), None
            if jpeg is None:
                return False
            if self._ring is not None:
                self._ring(jpeg, self._clock())
            if self._decoder.decode_into(jpeg, out):
                return True
            log.warning("event=bad_jpeg camera=%s bytes=%d", self.camera.id, len(jpeg))

    def _connect(self) -> None:
        raise NotImplementedError

    def _next_jpeg(self) -> bytes | None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class HttpMjpegSource(_JpegSource):
    """An HTTP MJPEG stream (multipart/x-mixed-replace), as most IP cameras serve one."""

    def __init__(self, url: str, rows: int, camera: CameraSettings, ring: JpegSink | None, clock: Callable[[], float]) -> None:
        super().__init__(rows, camera, ring, clock)
        self.url = url
        self._response: http.client.HTTPResponse | None = None
        self._parts: Iterator[bytes] = iter(())

    def describe(self) -> str:
        return self.url

    def _connect(self) -> None:
        try:
            self._response = urllib.request.urlopen(self.url, timeout=CONNECT_TIMEOUT_S)
        except (OSError, http.client.HTTPException, urllib.error.URLError) as exc:
            raise SourceError(f"camera {self.camera.id!r}: cannot open {self.url}: {exc}") from None
        self._parts = jpeg_parts(self._response, boundary_of(self._response.headers.get("Content-Type", "")))

    def _next_jpeg(self) -> bytes | None:
        try:
            return next(self._parts, None)
        except (OSError, ValueError, http.client.HTTPException) as exc:  # includes StreamError and a closed response
            log.info("event=mjpeg_stream_ended camera=%s reason=%r", self.camera.id, str(exc))
            return None

    def close(self) -> None:
        if self._response is not None:
            self._response.close()


class MqttJpegSource(_JpegSource):
    """JPEG payloads on an MQTT topic (ESP32-class cameras, NVR snapshots); only the newest waiting one is used."""

    def __init__(
        self, broker: BrokerUrl, topic: str, rows: int, camera: CameraSettings, ring: JpegSink | None, clock: Callable[[], float]
    ) -> None:
        super().__init__(rows, camera, ring, clock)
        self.broker, self.topic = broker, topic
        self.dropped = 0  # payloads replaced by a newer one before they were decoded
        self._latest: bytes | None = None
        self._closed = False
        self._cond = threading.Condition()
        self._client = threaded_client(broker, client_id=f"guardlink-camera-{camera.id}")
        self._client.on_connect = lambda client, userdata, flags, rc, props: client.subscribe(topic, qos=0)
        self._client.on_message = self._arrived
        self._client.reconnect_delay_set(1, 10)

    def describe(self) -> str:
        return f"topic {self.topic!r} on {self.broker} within {CONNECT_TIMEOUT_S:.0f} s"

    def _connect(self) -> None:
        try:
            self._client.connect(self.broker.host, self.broker.port)
        except OSError as exc:
            raise SourceError(f"camera {self.camera.id!r}: cannot reach {self.broker}: {exc}") from None
        self._client.loop_start()

    def _arrived(self, client: PahoClient, userdata: object, message: PahoMessage) -> None:
        with self._cond:
            if self._latest is not None:
                self.dropped += 1
            self._latest = message.payload
            self._cond.notify()

    def _next_jpeg(self) -> bytes | None:
        with self._cond:
            # The first image must come within the connect timeout; after that, wait as long as it takes.
            self._cond.wait_for(lambda: self._latest is not None or self._closed, CONNECT_TIMEOUT_S if self._decoder.shape is None else None)
            jpeg, self._latest = self._latest, None
            return None if self._closed else jpeg

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._client.disconnect()
        self._client.loop_stop()


class OpenCvSource:
    """cv2.VideoCapture, for video sources when ffmpeg is not installed (colour decode, then grey: slower)."""

    def __init__(self, url: str, rows: int, camera: CameraSettings, ring: JpegSink | None, clock: Callable[[], float]) -> None:
        self.url, self.rows, self.camera = url, rows, camera
        self.shape = (0, 0)
        self.fps: float | None = None
        self._ring, self._clock = ring, clock
        self._capture: cv2.VideoCapture | None = None
        self._ring_at = float("-inf")

    def start(self) -> None:
        self._capture = cv2.VideoCapture(self.url)
        if not self._capture.isOpened():
            raise SourceError(f"camera {self.camera.id!r}: OpenCV cannot open {self.url!r}")
        width, height = int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.shape = (self.rows, max(1, round(width * self.rows / height)))
        self.fps = self._capture.get(cv2.CAP_PROP_FPS) or None

    def read_into(self, out: np.ndarray) -> bool:
        assert self._capture is not None  # opened by start()
        ok, frame = self._capture.read()
        if not ok:
            return False
        cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), (out.shape[1], out.shape[0]), dst=out, interpolation=cv2.INTER_AREA)
        now = self._clock()
        if self._ring is not None and now - self._ring_at >= 1 / self.camera.evidence.fps:
            self._ring_at = now
            width = self.camera.evidence.width
            small = cv2.resize(frame, (width, max(1, round(frame.shape[0] * width / frame.shape[1]))), interpolation=cv2.INTER_AREA)
            self._ring(cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, self.camera.evidence.quality])[1].tobytes(), now)
        return True

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()


def _mjpeg_scale(quality: int) -> int:
    """ffmpeg's MJPEG -q:v (2 best .. 31 worst) for a JPEG quality of 10..100."""
    return max(2, min(31, round(2 + (100 - quality) * 29 / 90)))
