"""What an edge node tells operators about itself: Prometheus metrics on /metrics and telemetry to InfluxDB.

Both are fed by cheap synchronous calls on the event loop (a counter increment, an append to a bounded
buffer) and neither can hold up an alarm: /metrics is rendered when scraped, and telemetry is written by
other threads and dropped (counted) when InfluxDB cannot keep up. Escalation latency is timed per stage
from the outbox's own records: received (the revision was made; for a press, when its message
arrived) -> stored (committed to the outbox) -> delivered (PUBACK from the police broker).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gateway.dc09_metrics import alarm_centre_metrics
from gateway.metrics_endpoint import MetricsEndpoint, serving_metrics
from gateway.outbox import Pending
from gateway.telemetry import TelemetrySink
from guardlink.models import Escalation, Event, EventKind
from guardlink.siteconfig import parse_listen

if TYPE_CHECKING:
    from edge.evidence_store import Swept
    from edge.guards import GuardBoard
    from edge.intake import Intake
    from edge.supervision import Supervisor
    from edge.vision.process import CameraProcess
    from gateway.dc09_transmitter import AlarmCentres
    from gateway.evidence_upload import EvidenceUploader
    from gateway.outbox import Outbox
    from gateway.uplink import PoliceUplink
    from guardlink.siteconfig import SiteConfig


class NodeView(Protocol):
    """What the monitor reads of an edge node (and nothing it could change): edge/node.py's EdgeNode is one."""

    config: SiteConfig
    clock: Callable[[], float]
    outbox: Outbox
    uplink: PoliceUplink
    alarm_centres: AlarmCentres
    intake: Intake
    board: GuardBoard
    supervisor: Supervisor
    cameras: dict[str, CameraProcess]
    evidence_swept: Swept
    uploads: EvidenceUploader | None
    site_connected: bool
    incidents: int
    set_aside: Tally[str]

log = logging.getLogger(__name__)

RECEIVED_TO_STORED = "received_to_stored"
STORED_TO_DELIVERED = "stored_to_delivered"
RECEIVED_TO_DELIVERED = "received_to_delivered"
STAGES = (RECEIVED_TO_STORED, STORED_TO_DELIVERED, RECEIVED_TO_DELIVERED)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

# InfluxDB measurements (tags; fields). Every point also carries the tag `site`.
DEVICE_HEALTH = "device_health"  # device, driver; battery, linkquality (as reported) | last_seen, silent_s, online, rejected (sampled)
GUARD_POSITION = "guard_position"  # guard, device; lat, lon, accuracy_m (at most one per guard per positions_every_s)
GUARD_VITALS = "guard_vitals"  # guard, device; heart_rate
CAMERA = "camera"  # camera; fps, dropped_frames, motion_share, cpu_percent
INCIDENT = "incident"  # kind, severity, device, zone, status; guards, distance_m (when the first revision is stored)
ESCALATION_LATENCY = "escalation_latency"  # stage, kind; ms (each revision, each stage)
EDGE = "edge"  # backlog, expired, outbox_ok, site_broker_connected, police_broker_connected, incidents, telemetry_dropped (sampled)

P = ParamSpec("P")


def _never_raises(method: Callable[P, None]) -> Callable[P, None]:
    """Monitoring runs inside the event path (intake, outbox): a bug here is logged, never passed on."""

    @functools.wraps(method)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            method(*args, **kwargs)
        except Exception:
            log.exception("event=monitor_failed step=%s", method.__name__)

    return guarded


@dataclass(slots=True)
class CameraReading:
    """The last load figures a camera pipeline reported."""

    fps: float
    dropped_frames: int
    motion_share: float
    cpu_percent: float
    dropped_total: int  # across pipeline restarts, for the Prometheus counter


@dataclass(slots=True)
class DeviceReading:
    """The last battery and link quality a device reported."""

    battery: float | None = None
    linkquality: float | None = None


class SiteMonitor:
    """Metrics and telemetry of one edge node; `run` serves /metrics and samples status while the node runs."""

    def __init__(self, node: NodeView) -> None:
        """Reads `node` when sampled or scraped; the node feeds it stored and delivered revisions and camera statistics."""
        self.node = node
        config = node.config
        disable_created_metrics()  # process-wide: `_created` series only double what Prometheus scrapes
        self.registry = CollectorRegistry()
        self.telemetry = TelemetrySink(config.telemetry, site=config.site.id, clock=node.clock) if config.telemetry else None
        self.endpoint: MetricsEndpoint | None = None
        self._events = Counter("guardlink_events", "Device events decoded, by kind", ["kind"], registry=self.registry)
        self._event_counters: dict[EventKind, Counter] = {}
        self._incidents = Counter(
            "guardlink_incidents", "Incidents raised (first revisions stored), by kind and severity", ["kind", "severity"], registry=self.registry
        )
        self._revisions = Counter("guardlink_escalation_revisions", "Escalation revisions stored in the outbox, by status", ["status"], registry=self.registry)
        self._delivered = Counter(
            "guardlink_escalation_revisions_delivered", "Escalation revisions acknowledged by the police broker (PUBACK)", registry=self.registry
        )
        latency = Histogram(
            "guardlink_escalation_latency_seconds",
            "Escalation latency by stage: received_to_stored, stored_to_delivered, received_to_delivered",
            ["stage"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self._latency = {stage: latency.labels(stage) for stage in STAGES}
        self.registry.register(_NodeState(self))
        self.devices: dict[str, DeviceReading] = {}
        self.cameras: dict[str, CameraReading] = {}
        self._drivers = {d.id: d.driver for d in config.devices}
        self._positions_at: dict[str, float] = {}

    async def run(self) -> None:
        """Serve /metrics (when `metrics.listen` is set) and write telemetry (when configured) until cancelled."""
        async with contextlib.AsyncExitStack() as stack:
            listen = self.node.config.metrics.listen
            if listen:
                try:
                    self.endpoint = await stack.enter_async_context(serving_metrics(self.registry, *parse_listen(listen)))
                except OSError as exc:  # metrics are for operators: the site goes on without them
                    log.error(
                        "event=metrics_unavailable listen=%s error=%r action=%r",
                        listen, str(exc), "the edge runs without /metrics; free the port or change metrics.listen",
                    )
            if self.telemetry is not None and await self._start_telemetry():
                stack.push_async_callback(asyncio.to_thread, self.telemetry.close)
                while True:
                    self.sample_status()
                    await asyncio.sleep(self.telemetry.settings.status_every_s)
            await asyncio.get_running_loop().create_future()  # only /metrics to serve: wait for cancellation

    async def _start_telemetry(self) -> bool:
        telemetry = self.telemetry
        if telemetry is None:
            return False
        try:
            await asyncio.to_thread(telemetry.start)
        except Exception:  # telemetry is lossy by design: the site goes on without it
            log.exception("event=telemetry_unavailable url=%s", telemetry.settings.url)
            self.telemetry = None
            return False
        return True

    # -- what the node reports -------------------------------------------------------------------

    @_never_raises
    def event(self, event: Event) -> None:
        """A decoded device event: counted; device health, guard positions and vitals go to telemetry."""
        counter = self._event_counters.get(event.kind)
        if counter is None:
            counter = self._event_counters[event.kind] = self._events.labels(event.kind.value)
        counter.inc()
        if event.battery is not None or event.linkquality is not None:
            reading = self.devices.setdefault(event.device, DeviceReading())
            reading.battery = event.battery if event.battery is not None else reading.battery
            reading.linkquality = event.linkquality if event.linkquality is not None else reading.linkquality
            self._record(DEVICE_HEALTH, {"device": event.device, "driver": self._drivers.get(event.device)},
                         {"battery": event.battery, "linkquality": event.linkquality}, event.at)
        if self.telemetry is None or (wearer := self.node.board.wearer(event.device)) is None:
            return
        tags = {"guard": wearer.guard.id, "device": event.device}
        if event.kind is EventKind.POSITION and event.location is not None:
            last = self._positions_at.get(wearer.guard.id)
            if last is None or event.at - last >= self.telemetry.settings.positions_every_s:
                self._positions_at[wearer.guard.id] = event.at
                fields = {"lat": event.location.lat, "lon": event.location.lon, "accuracy_m": event.accuracy_m}
                self._record(GUARD_POSITION, tags, fields, event.at)
        elif event.kind is EventKind.VITALS:
            rate = event.attrs.get("heart_rate")
            self._record(GUARD_VITALS, tags, {"heart_rate": rate if isinstance(rate, int | float) else None}, event.at)

    @_never_raises
    def camera_stats(
        self, camera: str, *, fps: float, dropped_frames: int, motion_share: float, cpu_percent: float, at: float | None = None
    ) -> None:
        """A camera pipeline's load; call on the edge's loop, about once a second per camera.

        `dropped_frames` counts from the pipeline's start (a restart may begin again at 0); `motion_share` is
        the fraction of the frame that moved (0..1); `cpu_percent` is the camera worker's CPU (100 = one core).
        """
        previous = self.cameras.get(camera)
        total = dropped_frames
        if previous is not None:
            total = previous.dropped_total + (dropped_frames - previous.dropped_frames if dropped_frames >= previous.dropped_frames else dropped_frames)
        self.cameras[camera] = CameraReading(fps, dropped_frames, motion_share, cpu_percent, total)
        fields = {"fps": fps, "dropped_frames": dropped_frames, "motion_share": motion_share, "cpu_percent": cpu_percent}
        self._record(CAMERA, {"camera": camera}, fields, self.node.clock() if at is None else at)

    def camera_report(self, camera: str, stats: dict[str, Any]) -> None:
        """A camera worker's stats line (edge/vision/worker.py) as camera_stats."""
        self.camera_stats(
            camera, fps=float(stats.get("fps", 0.0)), dropped_frames=int(stats.get("dropped", 0)),
            motion_share=float(stats.get("motion_share", 0.0)), cpu_percent=float(stats.get("cpu_percent", 0.0)),
        )

    # -- the outbox's observers ------------------------------------------------------------------

    @_never_raises
    def stored(self, revisions: list[Pending]) -> None:
        """Revisions just committed to the outbox (or held in memory when the disk fails)."""
        for pending in revisions:
            escalation = pending.escalation
            self._revisions.labels(escalation.status.value).inc()
            if pending.settled_at is not None:
                self._stage(RECEIVED_TO_STORED, escalation, pending.settled_at - _received(escalation), pending.settled_at)
            if escalation.revision == 1:
                incident = escalation.incident
                self._incidents.labels(incident.kind.value, incident.severity.value).inc()
                tags = {"kind": incident.kind.value, "severity": incident.severity.value, "device": incident.device,
                        "zone": incident.zone, "status": escalation.status.value}
                distance = min((a.distance_m for a in escalation.assignments), default=None)
                self._record(INCIDENT, tags, {"guards": len(escalation.assignments), "distance_m": distance}, incident.detected_at.timestamp())

    @_never_raises
    def delivered(self, revisions: list[Pending], at: float) -> None:
        """Revisions the police broker acknowledged at `at`."""
        self._delivered.inc(len(revisions))
        for pending in revisions:
            stored_at = pending.settled_at if pending.settled_at is not None else pending.stored_at
            self._stage(STORED_TO_DELIVERED, pending.escalation, at - stored_at, at)
            self._stage(RECEIVED_TO_DELIVERED, pending.escalation, at - _received(pending.escalation), at)

    @_never_raises
    def sample_status(self) -> None:
        """Device health and the edge's backlog and links, as telemetry (Prometheus reads them when scraped)."""
        if self.telemetry is None:
            return
        node, now = self.node, self.node.clock()
        rejected = Tally[str]()
        for (device, _), count in node.intake.rejections.counts.items():
            rejected[device] += count
        for device, watched in node.supervisor.devices.items():
            fields = {"last_seen": watched.last_seen, "silent_s": max(0.0, now - watched.last_seen), "online": not watched.offline, "rejected": rejected[device]}
            self._record(DEVICE_HEALTH, {"device": device, "driver": self._drivers.get(device)}, fields, now)
        fields = {
            "backlog": node.outbox.backlog, "expired": node.outbox.expired, "outbox_ok": node.outbox.ok,
            "site_broker_connected": node.site_connected, "police_broker_connected": node.uplink.connected,
            "incidents": node.incidents, "telemetry_dropped": self.telemetry.stats.dropped,
        }
        self._record(EDGE, {}, fields, now)

    # -- internals -------------------------------------------------------------------------------

    def _stage(self, stage: str, escalation: Escalation, seconds: float, at: float) -> None:
        seconds = max(0.0, seconds)  # an injected test clock may run backwards
        self._latency[stage].observe(seconds)
        self._record(ESCALATION_LATENCY, {"stage": stage, "kind": escalation.incident.kind.value}, {"ms": seconds * 1000}, at)

    def _record(self, measurement: str, tags: Mapping[str, str | None], fields: Mapping[str, float | int | bool | None], at: float) -> None:
        if self.telemetry is not None:
            self.telemetry.record(measurement, tags, fields, at)


def _received(escalation: Escalation) -> float:
    """When the revision was made: for a press, when its message reached the edge."""
    return escalation.issued_at.timestamp()


class _NodeState:
    """Prometheus collector for state other parts of the node own; read when scraped, so it costs nothing between scrapes."""

    def __init__(self, monitor: SiteMonitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        monitor, node = self.monitor, self.monitor.node
        yield GaugeMetricFamily("guardlink_outbox_backlog", "Escalation revisions stored, not yet acknowledged by the police broker", value=node.outbox.backlog)
        yield GaugeMetricFamily("guardlink_outbox_ok", "1 while the outbox database takes writes", value=float(node.outbox.ok))
        yield GaugeMetricFamily("guardlink_unreceipted", "Revisions delivered to the police broker whose command-centre receipt has not come back", value=node.outbox.unreceipted)
        yield GaugeMetricFamily("guardlink_oldest_unreceipted_seconds", "Age of the oldest unreceipted revision", value=node.outbox.oldest_unreceipted_s())
        set_aside = CounterMetricFamily("guardlink_messages_set_aside", "Messages that failed in processing, set aside and acknowledged, by origin", labels=["origin"])
        for origin, count in sorted(node.set_aside.items()):
            set_aside.add_metric([origin], count)
        yield set_aside
        yield CounterMetricFamily("guardlink_escalation_revisions_expired", "Non-critical revisions dropped undelivered after 24 h", value=node.outbox.expired)
        yield GaugeMetricFamily("guardlink_site_broker_connected", "1 while connected to the site broker", value=float(node.site_connected))
        yield GaugeMetricFamily("guardlink_police_broker_connected", "1 while connected to the police broker", value=float(node.uplink.connected))
        rejected = CounterMetricFamily("guardlink_payloads_rejected", "Device messages rejected, by device and reason", labels=["device", "reason"])
        for (device, reason), count in sorted(node.intake.rejections.counts.items()):
            rejected.add_metric([device, reason], count)
        yield rejected
        online = GaugeMetricFamily("guardlink_device_online", "1 while a device is heard from within its heartbeat", labels=["device"])
        seen = GaugeMetricFamily("guardlink_device_last_seen_timestamp_seconds", "When a device was last heard from", labels=["device"])
        for device, watched in node.supervisor.devices.items():
            online.add_metric([device], float(not watched.offline))
            seen.add_metric([device], watched.last_seen)
        yield online
        yield seen
        battery = GaugeMetricFamily("guardlink_device_battery_percent", "Last battery level a device reported", labels=["device"])
        link = GaugeMetricFamily("guardlink_device_linkquality", "Last link quality a device reported (Zigbee LQI 0-255)", labels=["device"])
        for device, reading in monitor.devices.items():
            if reading.battery is not None:
                battery.add_metric([device], reading.battery)
            if reading.linkquality is not None:
                link.add_metric([device], reading.linkquality)
        yield battery
        yield link
        yield from self._cameras()
        swept = node.evidence_swept
        yield CounterMetricFamily("guardlink_evidence_removed", "Evidence files removed to keep the directory under evidence_keep_mb", value=swept.removed)
        yield CounterMetricFamily("guardlink_evidence_removed_bytes", "Bytes of evidence removed to keep the directory under evidence_keep_mb", value=swept.removed_bytes)
        yield GaugeMetricFamily("guardlink_evidence_bytes", "What the evidence directory held after the last sweep", value=swept.kept_bytes)
        yield GaugeMetricFamily("guardlink_evidence_over_limit", "1 when only files not yet uploaded or recent keep it over evidence_keep_mb", value=float(swept.over_limit))
        if node.uploads is not None:
            uploads = node.uploads
            yield CounterMetricFamily("guardlink_evidence_uploaded", "Evidence files the hub holds complete and checked", value=uploads.uploaded)
            yield CounterMetricFamily("guardlink_evidence_upload_refused", "Evidence files the hub will never take (too large, changed or gone): not retried", value=uploads.refused)
            yield GaugeMetricFamily("guardlink_evidence_uploads_pending", "Evidence files waiting to go to the hub", value=len(uploads.pending))
        yield from alarm_centre_metrics(self.monitor.node.alarm_centres.status())
        if monitor.telemetry is not None:
            stats = monitor.telemetry.stats
            yield CounterMetricFamily("guardlink_telemetry_written", "Telemetry points InfluxDB accepted", value=stats.written)
            yield CounterMetricFamily("guardlink_telemetry_dropped", "Telemetry points dropped: buffer full, or InfluxDB down", value=stats.dropped)
            yield GaugeMetricFamily("guardlink_telemetry_buffered", "Telemetry points waiting for InfluxDB", value=stats.buffered + stats.in_flight)

    def _cameras(self) -> Iterator[Metric]:
        fps = GaugeMetricFamily("guardlink_camera_fps", "Frames per second a camera pipeline processes", labels=["camera"])
        motion = GaugeMetricFamily("guardlink_camera_motion_ratio", "Fraction of the frame in motion (0-1)", labels=["camera"])
        cpu = GaugeMetricFamily("guardlink_camera_cpu_percent", "CPU of a camera's worker (100 = one core)", labels=["camera"])
        dropped = CounterMetricFamily("guardlink_camera_dropped_frames", "Frames a camera pipeline skipped to stay on the latest", labels=["camera"])
        for camera, reading in self.monitor.cameras.items():
            fps.add_metric([camera], reading.fps)
            motion.add_metric([camera], reading.motion_share)
            cpu.add_metric([camera], reading.cpu_percent)
            dropped.add_metric([camera], reading.dropped_total)
        yield from (fps, motion, cpu, dropped)
