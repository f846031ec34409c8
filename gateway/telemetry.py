"""Telemetry to InfluxDB: a bounded, lossy side path that never slows the event path.

The event loop only appends samples to a bounded buffer; when it is full the oldest sample is dropped
and counted. A feeder thread takes them out in batches (by `batch_size`, or every `flush_interval_ms`),
turns each batch into line protocol and hands it to influxdb-client's batching write API (the InfluxDB
v2 write API: InfluxDB 2.x, 3.x, 1.8+, VictoriaMetrics), which writes and retries on a thread of its
own. At most two batches are in the client's hands at once, so an InfluxDB that is slow or down fills
our buffer (and drops are counted) instead of memory. A batch the client gives up on is dropped and
counted too. Escalations never take this path: they go through the outbox.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from guardlink.siteconfig import ConfigError, Telemetry

log = logging.getLogger(__name__)

TOKEN_FILE = "GUARDLINK_INFLUX_TOKEN_FILE"
ENVIRONMENT = {
    "url": "GUARDLINK_INFLUX_URL",
    "token": "GUARDLINK_INFLUX_TOKEN",
    "org": "GUARDLINK_INFLUX_ORG",
    "bucket": "GUARDLINK_INFLUX_BUCKET",
}
_LOG_EVERY_S = 60.0  # write failures and drops are logged at most this often
_CLOSE_WAIT_MS = 2000  # on shutdown, what is still buffered gets this long to reach InfluxDB


def settings_from_environment(configured: Telemetry | None, environ: Mapping[str, str]) -> Telemetry | None:
    """The site file's telemetry settings with GUARDLINK_INFLUX_URL/TOKEN/ORG/BUCKET over them (the token may also be
    in a file named by GUARDLINK_INFLUX_TOKEN_FILE, e.g. a systemd credential); None means off."""
    overrides = {field: environ[name] for field, name in ENVIRONMENT.items() if environ.get(name)}
    if environ.get(TOKEN_FILE) and "token" not in overrides:
        try:
            overrides["token"] = next(iter(Path(environ[TOKEN_FILE]).expanduser().read_text().splitlines()), "").strip()
        except OSError as exc:
            raise ConfigError([f"{TOKEN_FILE}: cannot read {environ[TOKEN_FILE]!r}: {exc.strerror}"]) from None
    if configured is None and "url" not in overrides:
        if overrides:
            log.warning("event=telemetry_off reason=%r", f"{', '.join(ENVIRONMENT[f] for f in overrides)} set but no GUARDLINK_INFLUX_URL")
        return None
    try:
        return Telemetry.model_validate((configured.model_dump() if configured else {}) | overrides)
    except ValidationError as exc:
        names = ", ".join(ENVIRONMENT[f] for f in overrides)
        raise ConfigError([f"{names}: {err['msg'].removeprefix('Value error, ')}" for err in exc.errors()]) from None


@dataclass(frozen=True, slots=True)
class Sample:
    """One point: measurement, tags, numeric fields and when it was taken (epoch seconds)."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: tuple[tuple[str, float], ...]
    at: float


class SampleBuffer:
    """A bounded FIFO between the event loop (`put`) and the feeder thread (`take`); full, it drops the oldest."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.added = 0
        self.dropped = 0
        self._items: deque[Sample] = deque()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, sample: Sample) -> None:
        """Append; if full, the oldest sample goes first (counted in `dropped`)."""
        with self._lock:
            if len(self._items) >= self.capacity:
                self._items.popleft()
                self.dropped += 1
            self._items.append(sample)
            self.added += 1

    def counts(self) -> tuple[int, int, int]:
        """Samples added, dropped and held, taken together."""
        with self._lock:
            return self.added, self.dropped, len(self._items)

    def take(self, limit: int) -> list[Sample]:
        """Remove and return up to `limit` of the oldest samples."""
        with self._lock:
            return [self._items.popleft() for _ in range(min(limit, len(self._items)))]


@dataclass(frozen=True, slots=True)
class TelemetryStats:
    """Where every recorded sample is: recorded = written + dropped + buffered + in_flight."""

    recorded: int
    written: int
    dropped: int  # pushed out of a full buffer, or in a batch InfluxDB never took
    buffered: int
    in_flight: int  # handed to the client, not yet written or given up


class TelemetrySink:
    """Writes samples to InfluxDB in the background; `record` never blocks and never raises for a bad server."""

    def __init__(self, settings: Telemetry, *, site: str, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.site = site
        self.clock = clock
        self.buffer = SampleBuffer(settings.buffer_points)
        self.written = 0
        self.failed = 0
        self._in_flight = 0
        self._max_in_flight = 2 * settings.batch_size
        self._settle_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._feeder: threading.Thread | None = None
        self._failing_since: float | None = None
        self._last_logged = float("-inf")
        self._logged_drops = 0
        self._client: Any = None
        self._write_api: Any = None
        self._scheduler: Any = None

    # -- the event loop's side -------------------------------------------------------------------

    def record(self, measurement: str, tags: Mapping[str, str | None], fields: Mapping[str, float | int | bool | None], at: float | None = None) -> None:
        """Queue one point; fields that are None or not finite numbers are left out, tags that are None too."""
        values = tuple((k, float(v)) for k, v in fields.items() if isinstance(v, int | float) and math.isfinite(v))
        if not values:
            return
        self.buffer.put(Sample(measurement, tuple((k, str(v)) for k, v in tags.items() if v is not None), values, self.clock() if at is None else at))
        if len(self.buffer) >= self.settings.batch_size and not self._wake.is_set():
            self._wake.set()

    @property
    def stats(self) -> TelemetryStats:
        """A consistent snapshot: taking from the buffer and counting in flight happen under the same lock."""
        with self._settle_lock:
            added, overflowed, buffered = self.buffer.counts()
            return TelemetryStats(added, self.written, self.failed + overflowed, buffered, self._in_flight)

    # -- lifetime (blocking: call from a thread, e.g. asyncio.to_thread) ---------------------------

    def start(self) -> None:
        """Create the client and start the feeder thread; no I/O happens here."""
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import WriteOptions
        from reactivex.scheduler import EventLoopScheduler

        # The client logs every failed batch and retry at ERROR/WARNING; the feeder logs a rate-limited summary instead.
        for name in ("influxdb_client.client.write_api", "influxdb_client.client.write.retry"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        s = self.settings
        self._client = InfluxDBClient(url=s.url, token=s.token, org=s.org, timeout=s.timeout_ms)
        options = WriteOptions(
            batch_size=1,  # each record we hand over is already a whole batch: one request
            flush_interval=s.flush_interval_ms,
            retry_interval=1000,
            max_retries=s.max_retries,
            max_retry_delay=5000,
            max_retry_time=(s.max_retries + 1) * (s.timeout_ms + 5000),
            exponential_base=2,
            max_close_wait=_CLOSE_WAIT_MS,
            # Our own writer thread (the default scheduler is shared by every client in the process).
            write_scheduler=EventLoopScheduler(thread_factory=_writer_thread),
        )
        self._scheduler = options.write_scheduler
        self._write_api = self._client.write_api(
            write_options=options,
            success_callback=lambda conf, data: self._settled(_points_in(data), None),
            error_callback=lambda conf, data, exc: self._settled(_points_in(data), exc),
        )
        self._feeder = threading.Thread(target=self._feed, name="telemetry", daemon=True)
        self._feeder.start()
        log.info("event=telemetry_on url=%s org=%s bucket=%s buffer_points=%d", s.url, s.org, s.bucket, s.buffer_points)

    def close(self) -> None:
        """Hand over what is buffered, give it a short while to be written, then stop; bounded in time."""
        if self._feeder is None:
            return
        self._stopping = True
        self._wake.set()
        self._feeder.join()
        self._feeder = None
        self._write_api.close()  # flushes the client's batches, waiting at most _CLOSE_WAIT_MS
        self._client.close()
        self._scheduler.dispose()
        stats = self.stats
        log.info("event=telemetry_closed written=%d dropped=%d unsent=%d", stats.written, stats.dropped, stats.buffered + stats.in_flight)

    # -- the feeder thread -----------------------------------------------------------------------

    def _feed(self) -> None:
        from influxdb_client import Point, WritePrecision

        interval_s = self.settings.flush_interval_ms / 1000
        while True:
            stopping = self._stopping
            with self._settle_lock:
                taken = self.buffer.take(self._max_in_flight - self._in_flight)
                self._in_flight += len(taken)
            for start in range(0, len(taken), self.settings.batch_size):
                # One line-protocol body per batch: handing the client single points costs it far more CPU.
                batch = taken[start : start + self.settings.batch_size]
                body = "\n".join(self._point(Point, s).to_line_protocol() for s in batch).encode()
                try:
                    self._write_api.write(self.settings.bucket, self.settings.org, body, write_precision=WritePrecision.NS)
                except Exception as exc:
                    self._settled(len(batch), exc)
            self._log_drops()
            if stopping:
                return
            self._wake.wait(interval_s)
            self._wake.clear()

    def _point(self, point_type: Any, sample: Sample) -> Any:
        point = point_type(sample.measurement).tag("site", self.site)
        for key, tag in sample.tags:
            point.tag(key, tag)
        for key, value in sample.fields:
            point.field(key, value)
        return point.time(int(sample.at * 1e9))

    def _settled(self, count: int, error: Exception | None) -> None:
        now = time.monotonic()
        with self._settle_lock:
            self._in_flight -= count
            if error is None:
                self.written += count
            else:
                self.failed += count
        if error is None:
            if self._failing_since is not None:
                log.warning("event=telemetry_recovered url=%s after_s=%.0f", self.settings.url, now - self._failing_since)
                self._failing_since = None
            return
        if self._failing_since is None:
            self._failing_since = now
        if now - self._last_logged >= _LOG_EVERY_S:
            self._last_logged = now
            log.warning(
                "event=telemetry_write_failed url=%s points=%d dropped_total=%d error=%r action=%r",
                self.settings.url, count, self.stats.dropped, str(error)[:200], "telemetry is lossy: the edge goes on; check InfluxDB",
            )

    def _log_drops(self) -> None:
        dropped = self.buffer.dropped
        now = time.monotonic()
        if dropped > self._logged_drops and now - self._last_logged >= _LOG_EVERY_S:
            self._last_logged = now
            log.warning(
                "event=telemetry_dropping reason=%r dropped_since_last=%d buffer_points=%d",
                "buffer full: InfluxDB slow or down", dropped - self._logged_drops, self.buffer.capacity,
            )
            self._logged_drops = dropped


def _writer_thread(target: Callable[[], None]) -> threading.Thread:
    """The client's writer: a daemon, so a request stuck on a dead server cannot hold up the process's exit."""

    def run() -> None:
        try:
            target()
        except Exception:  # the client finishing a stuck request after `close` stopped waiting for it
            log.debug("event=telemetry_writer_ended", exc_info=True)

    return threading.Thread(target=run, name="telemetry-writer", daemon=True)


def _points_in(data: bytes | str) -> int:
    """Points in a batch the client wrote: one line each, as tags are escaped and fields are numbers."""
    return (data.count(b"\n") if isinstance(data, bytes) else data.count("\n")) + 1
