"""Telemetry to InfluxDB: through the real influxdb-client into a real VictoriaMetrics, read back value by value;
lossy, bounded and never in the way of an escalation."""

from __future__ import annotations

import asyncio
import json
import math
import re
import socket
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from bench.servers import running_victoria_metrics
from device_drivers import zigbee2mqtt
from device_drivers.simulators import SiteSimulator
from edge import monitor
from gateway.telemetry import (
    Sample,
    SampleBuffer,
    TelemetrySink,
    TelemetryStats,
    settings_from_environment,
)
from guardlink import topics
from guardlink.models import Escalation
from guardlink.siteconfig import (
    ConfigError,
    SiteConfig,
    Telemetry,
    load_templates,
    parse_site,
)

from conftest import REPO, VictoriaMetrics, running_edge, wait_until

DASHBOARD = REPO / "firmware_configs" / "grafana" / "guardlink.json"


def sample(i: int) -> Sample:
    return Sample("m", (), (("v", float(i)),), float(i))


def ms(at: float) -> int:
    """A point's timestamp as VictoriaMetrics keeps it: nanoseconds written, truncated to milliseconds."""
    return int(at * 1e9) // 1_000_000


def values(series: list[dict], **labels: str) -> list[tuple[int, float]]:
    """(timestamp ms, value) pairs of the one series with these labels."""
    [found] = [s for s in series if all(s["metric"].get(k) == v for k, v in labels.items())]
    return list(zip(found["timestamps"], found["values"], strict=True))


def with_telemetry(config: SiteConfig, url: str, **settings: object) -> SiteConfig:
    """The site with telemetry to `url`, tuned to show up within a test's patience."""
    telemetry = Telemetry(url=url, flush_interval_ms=50, status_every_s=0.2, positions_every_s=0, timeout_ms=1000, **settings)
    return config.model_copy(update={"telemetry": telemetry})


# -- pure parts -------------------------------------------------------------------------------------


def test_a_full_buffer_drops_the_oldest_samples_first_and_counts_them():
    buffer = SampleBuffer(capacity=3)
    for i in range(5):
        buffer.put(sample(i))
    assert buffer.dropped == 2 and len(buffer) == 3
    assert [s.at for s in buffer.take(10)] == [2.0, 3.0, 4.0]
    assert buffer.take(10) == [] and buffer.dropped == 2


def test_environment_overrides_the_site_file_and_a_url_alone_turns_telemetry_on():
    in_file = Telemetry(url="http://influx-a:8086", token="from-file", org="site-org", bucket="b1", batch_size=7)
    env = {"GUARDLINK_INFLUX_URL": "https://influx-b:8086", "GUARDLINK_INFLUX_TOKEN": "from-env", "GUARDLINK_INFLUX_BUCKET": "b2"}
    merged = settings_from_environment(in_file, env)
    assert (merged.url, merged.token, merged.org, merged.bucket, merged.batch_size) == ("https://influx-b:8086", "from-env", "site-org", "b2", 7)
    assert settings_from_environment(None, {"GUARDLINK_INFLUX_URL": "http://x:8086"}).url == "http://x:8086"
    assert settings_from_environment(in_file, {}) == in_file


def test_without_an_influxdb_url_telemetry_is_off(school):
    assert school.telemetry is None and school.metrics.listen is None
    assert settings_from_environment(None, {}) is None
    assert settings_from_environment(None, {"GUARDLINK_INFLUX_TOKEN": "t"}) is None  # a token alone says nowhere to write


def test_a_bad_influxdb_url_in_the_environment_names_the_variable():
    with pytest.raises(ConfigError) as caught:
        settings_from_environment(None, {"GUARDLINK_INFLUX_URL": "influx:8086"})
    assert caught.value.messages[0].startswith("GUARDLINK_INFLUX_URL: telemetry URL 'influx:8086' must be http(s)://host:port")


def test_site_file_telemetry_and_metrics_sections_are_checked_with_their_position():
    site = (REPO / "firmware_configs" / "sites" / "school.yaml").read_text()
    templates = load_templates(REPO / "firmware_configs" / "templates")
    good = parse_site(site + "telemetry:\n  url: http://127.0.0.1:8086\n  bucket: school\nmetrics:\n  listen: 127.0.0.1:9464\n", "s.yaml", templates=templates)
    assert (good.telemetry.url, good.telemetry.bucket, good.telemetry.org, good.metrics.listen) == ("http://127.0.0.1:8086", "school", "guardlink", "127.0.0.1:9464")
    lines = site.count("\n")
    with pytest.raises(ConfigError) as caught:
        parse_site(site + "telemetry:\n  url: ftp://x\n  buffer_pts: 5\nmetrics:\n  listen: localhost\n", "s.yaml", templates=templates)
    assert caught.value.messages == [
        f"s.yaml:{lines + 2}:8: telemetry.url: telemetry URL 'ftp://x' must be http(s)://host:port, e.g. http://127.0.0.1:8086",
        f"s.yaml:{lines + 3}:3: telemetry.buffer_pts: unknown key (check the spelling)",
        f"s.yaml:{lines + 5}:11: metrics.listen: listen address 'localhost' must be host:port, e.g. 127.0.0.1:9464",
    ]


def test_the_dashboard_charts_only_measurements_and_fields_the_edge_writes():
    dashboard = json.loads(DASHBOARD.read_text())
    written = {
        monitor.DEVICE_HEALTH: {"battery", "linkquality", "last_seen", "silent_s", "online", "rejected"},
        monitor.GUARD_POSITION: {"lat", "lon", "accuracy_m"},
        monitor.GUARD_VITALS: {"heart_rate"},
        monitor.CAMERA: {"fps", "dropped_frames", "motion_share", "cpu_percent"},
        monitor.INCIDENT: {"guards", "distance_m"},
        monitor.ESCALATION_LATENCY: {"ms"},
        monitor.EDGE: {"backlog", "expired", "outbox_ok", "site_broker_connected", "police_broker_connected", "incidents", "telemetry_dropped"},
    }
    charted: dict[str, set[str]] = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            query = target["query"]
            [measurement] = re.findall(r'r\._measurement == "(\w+)"', query)
            fields = set(re.findall(r'r\._field == "(\w+)"', query))
            assert fields <= written.get(measurement, set()), f"{panel['title']}: {measurement} {fields}"
            assert 'r.site == "${site}"' in query and 'from(bucket: "${bucket}")' in query, panel["title"]
            charted.setdefault(measurement, set()).update(fields)
    assert charted.keys() == written.keys()  # every measurement has a chart


# -- the sink against real servers ----------------------------------------------------------------


async def test_points_reach_victoria_metrics_value_by_value(victoria_metrics: VictoriaMetrics):
    sink = TelemetrySink(Telemetry(url=victoria_metrics.url, flush_interval_ms=50), site="s1")
    await asyncio.to_thread(sink.start)
    now = time.time()
    written = {("btn-1", now - 2.5): (87.0, 120), ("btn-1", now - 1.25): (86.5, 90), ("btn 2,=x", now - 0.001): (12.0, 255)}
    try:
        for (device, at), (battery, linkquality) in written.items():
            sink.record("device_health", {"device": device, "driver": None}, {"battery": battery, "linkquality": linkquality, "note": None}, at)
        sink.record("device_health", {"device": "btn-1"}, {"battery": math.nan})  # not a number: not written at all
        series = await victoria_metrics.wait_for(
            '{__name__=~"device_health_.*"}', lambda s: sum(len(x["values"]) for x in s) == 6
        )
    finally:
        await asyncio.to_thread(sink.close)
    assert {s["metric"]["__name__"] for s in series} == {"device_health_battery", "device_health_linkquality"}
    assert all(set(s["metric"]) == {"__name__", "site", "device"} and s["metric"]["site"] == "s1" for s in series)
    for device in ("btn-1", "btn 2,=x"):
        expected = sorted((ms(at), v) for (d, at), v in written.items() if d == device)
        assert values(series, __name__="device_health_battery", device=device) == [(t, b) for t, (b, _) in expected]
        assert values(series, __name__="device_health_linkquality", device=device) == [(t, lq) for t, (_, lq) in expected]
    assert sink.stats == TelemetryStats(recorded=3, written=3, dropped=0, buffered=0, in_flight=0)


async def test_a_server_that_never_answers_costs_the_caller_nothing_and_the_oldest_points_are_dropped(tmp_path: Path):
    with socket.create_server(("127.0.0.1", 0), backlog=64) as black_hole:  # accepts connections, never answers
        url = f"http://127.0.0.1:{black_hole.getsockname()[1]}"
        # Requests time out only after 2 s: until then the client holds its two batches and takes no more.
        sink = TelemetrySink(Telemetry(url=url, batch_size=100, buffer_points=1000, timeout_ms=2000, max_retries=0, flush_interval_ms=20), site="s1")
        await asyncio.to_thread(sink.start)
        try:
            slowest = 0.0
            for i in range(20_000):
                started = time.perf_counter()
                sink.record("m", {"n": "x"}, {"v": i}, 1_700_000_000 + i)
                slowest = max(slowest, time.perf_counter() - started)
            stats = sink.stats
            assert stats.buffered == 1000 and stats.in_flight <= 200
            assert stats.dropped >= 20_000 - 1000 - 200 and stats.written == 0
            assert stats.recorded == stats.written + stats.dropped + stats.buffered + stats.in_flight == 20_000
            newest = [s.at for s in sink.buffer.take(len(sink.buffer))]
            assert newest == [1_700_000_000 + i for i in range(19_000, 20_000)]  # the oldest went first
            assert slowest < 0.05  # never waits on the server (generous: a loaded CI box preempts threads)
        finally:
            started = time.monotonic()
            await asyncio.to_thread(sink.close)
            assert time.monotonic() - started < 5


# -- the edge ---------------------------------------------------------------------------------------


def press_payload(battery: int, linkquality: int) -> bytes:
    return zigbee2mqtt.button_payload("single", battery=battery, linkquality=linkquality)


async def test_edge_writes_device_health_positions_vitals_incidents_and_latency(school, mosquitto, police_mosquitto, recorder, victoria_metrics, tmp_path):
    config = with_telemetry(school, victoria_metrics.url)
    police = recorder(police_mosquitto, topics.police_escalations_filter())
    site = school.site.id
    async with running_edge(config, mosquitto, police_mosquitto, tmp_path / "outbox.db") as node:
        with SiteSimulator(config, mosquitto, seed=5) as sim:
            await asyncio.to_thread(sim.report_positions)
            await wait_until(lambda: all(s.point for s in node.board.guards.values()), what="guard positions at the edge")
            li = sim.walkers["wear-li"].point
            await asyncio.to_thread(sim.publish_raw, topics.native_device_uplink(site, "wear-li"), json.dumps({"seq": 90, "type": "vitals", "hr": 88}).encode())
            await asyncio.to_thread(sim.publish_raw, "zigbee2mqtt/btn-gate", press_payload(battery=87, linkquality=120))
            await wait_until(lambda: police.payloads(), what="the escalation")
        escalation = Escalation.from_json(police.payloads()[0])
        selector = '{__name__=~"(device_health|guard_position|guard_vitals|incident|escalation_latency|edge)_.*"}'
        series = await victoria_metrics.wait_for(
            selector, lambda s: {x["metric"].get("stage") for x in s} >= {*monitor.STAGES} and any(x["metric"]["__name__"] == "guard_vitals_heart_rate" for x in s)
        )

    assert all(s["metric"]["site"] == site for s in series)
    [(_, battery)] = values(series, __name__="device_health_battery", device="btn-gate", driver="zigbee2mqtt")
    [(_, link)] = values(series, __name__="device_health_linkquality", device="btn-gate")
    assert (battery, link) == (87, 120)
    [(_, lat)] = values(series, __name__="guard_position_lat", guard="g-li", device="wear-li")
    [(_, lon)] = values(series, __name__="guard_position_lon", guard="g-li", device="wear-li")
    assert (lat, lon) == pytest.approx((li.lat, li.lon), rel=1e-12)
    assert [v for _, v in values(series, __name__="guard_vitals_heart_rate", guard="g-li")] == [88]
    incident = {"kind": "panic", "severity": "critical", "device": "btn-gate", "zone": "main-gate", "status": escalation.status.value}
    [(at, distance)] = values(series, __name__="incident_distance_m", **incident)
    assert at == ms(escalation.incident.detected_at.timestamp())
    assert distance == pytest.approx(min(a.distance_m for a in escalation.assignments), rel=1e-9)
    assert [v for _, v in values(series, __name__="incident_guards", **incident)] == [len(escalation.assignments)]
    stage = {s: values(series, __name__="escalation_latency_ms", stage=s, kind="panic")[0][1] for s in monitor.STAGES}
    assert 0 <= stage["received_to_stored"] < 5000 and 0 <= stage["stored_to_delivered"] < 5000
    assert stage["received_to_delivered"] == pytest.approx(stage["received_to_stored"] + stage["stored_to_delivered"], abs=1e-6)
    assert [v for _, v in values(series, __name__="device_health_online", device="btn-hall")][-1] == 1
    assert any(v == 0 for _, v in values(series, __name__="edge_backlog"))


async def test_edge_keeps_escalating_while_influxdb_is_down_and_counts_the_dropped_telemetry(school, mosquitto, police_mosquitto, recorder, tmp_path):
    police = recorder(police_mosquitto, topics.police_escalations_filter())
    with ExitStack() as influx:
        url = influx.enter_context(running_victoria_metrics(tmp_path / "vm"))
        vm = VictoriaMetrics(url)
        config = with_telemetry(school, url, buffer_points=50, max_retries=0)
        async with running_edge(config, mosquitto, police_mosquitto, tmp_path / "outbox.db") as node:
            sink = node.monitor.telemetry
            with SiteSimulator(config, mosquitto, seed=9) as sim:
                await asyncio.to_thread(sim.publish_raw, "zigbee2mqtt/btn-gate", press_payload(battery=80, linkquality=100))
                await wait_until(lambda: len(police.payloads()) == 1, what="the first escalation")
                await vm.wait_for('{__name__="incident_guards"}', lambda s: len(s) == 1)
                assert sink.stats.dropped == 0
                influx.close()  # InfluxDB goes away

                for press in range(5):
                    await asyncio.to_thread(sim.publish_raw, "zigbee2mqtt/btn-hall", press_payload(battery=70 - press, linkquality=100))
                    expected = 2 + press
                    await wait_until(lambda n=expected: len(police.payloads()) == n, timeout_s=5, what=f"escalation {expected} with InfluxDB down")
                    await asyncio.to_thread(sim.report_positions)
                await wait_until(lambda: sink.stats.dropped > 0, what="telemetry counted as dropped")

        stats = sink.stats
        assert stats.recorded == stats.written + stats.dropped + stats.buffered + stats.in_flight
        assert stats.buffered <= 50
    devices = [Escalation.from_json(p).incident.device for p in police.payloads()]
    assert devices == ["btn-gate"] + ["btn-hall"] * 5
