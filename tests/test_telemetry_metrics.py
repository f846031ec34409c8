"""The edge's Prometheus /metrics endpoint: scraped over HTTP, counters move with a press."""

from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from device_drivers import zigbee2mqtt
from device_drivers.simulators import SiteSimulator
from edge import monitor
from guardlink import topics
from guardlink.siteconfig import Metrics, SiteConfig

from conftest import running_edge, wait_until

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def with_metrics(config: SiteConfig, listen: str = "127.0.0.1:0") -> SiteConfig:
    return config.model_copy(update={"metrics": Metrics(listen=listen)})


def fetch(url: str, method: str = "GET") -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


async def scrape(url: str) -> Samples:
    """Every sample on the page, by name and labels (parsed by prometheus_client's own parser)."""
    status, content_type, text = await asyncio.to_thread(fetch, url)
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_a_press_moves_the_counters_and_histograms_on_metrics(school, mosquitto, police_mosquitto, recorder, tmp_path):
    police = recorder(police_mosquitto, topics.police_escalations_filter())
    async with running_edge(with_metrics(school), mosquitto, police_mosquitto, tmp_path / "outbox.db") as node:
        url = node.monitor.endpoint.url
        before = await scrape(url)
        with SiteSimulator(school, mosquitto, seed=2) as sim:
            await asyncio.to_thread(sim.publish_raw, "zigbee2mqtt/btn-gate", zigbee2mqtt.button_payload("single", battery=64, linkquality=99))
            await asyncio.to_thread(sim.publish_raw, "zigbee2mqtt/btn-gate", b"{not json")
            await wait_until(lambda: police.payloads(), what="the escalation")
        await wait_until(lambda: node.outbox.backlog == 0, what="the PUBACK")
        after = await scrape(url)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("guardlink_events_total", kind="panic") == 1
    assert moved("guardlink_events_total", kind="device_status") == 1
    assert moved("guardlink_incidents_total", kind="panic", severity="critical") == 1
    assert moved("guardlink_escalation_revisions_delivered_total") >= 1
    assert moved("guardlink_payloads_rejected_total", device="btn-gate", reason="malformed_json") == 1
    for stage in monitor.STAGES:
        assert moved("guardlink_escalation_latency_seconds_count", stage=stage) >= 1
        assert moved("guardlink_escalation_latency_seconds_bucket", stage=stage, le="+Inf") >= 1
        assert value(after, "guardlink_escalation_latency_seconds_sum", stage=stage) < 5
    assert value(after, "guardlink_outbox_backlog") == 0 and value(after, "guardlink_outbox_ok") == 1
    assert value(after, "guardlink_unreceipted") >= 1, "no command centre confirmed it in this test"
    assert value(after, "guardlink_site_broker_connected") == 1 and value(after, "guardlink_police_broker_connected") == 1
    assert value(after, "guardlink_device_battery_percent", device="btn-gate") == 64
    assert value(after, "guardlink_device_linkquality", device="btn-gate") == 99
    for name in ("guardlink_evidence_removed_total", "guardlink_evidence_removed_bytes_total", "guardlink_evidence_bytes", "guardlink_evidence_over_limit"):
        assert (name, ()) in after, f"{name} is exposed (edge/evidence_store.py)"
    assert value(after, "guardlink_device_online", device="btn-hall") == 1
    assert value(after, "guardlink_device_last_seen_timestamp_seconds", device="btn-gate") > value(before, "guardlink_device_last_seen_timestamp_seconds", device="btn-gate")


async def test_a_message_set_aside_is_counted_on_metrics(school, mosquitto, tmp_path):
    def broken_driver(payload, devices, now):
        raise RuntimeError("driver defect")

    async with running_edge(with_metrics(school), mosquitto, mosquitto, tmp_path / "outbox.db") as node:
        node.intake.routes["zigbee2mqtt/btn-gate"].decode = broken_driver
        with SiteSimulator(school, mosquitto) as sim:
            await asyncio.to_thread(sim.press, "btn-gate", "single")
            await wait_until(lambda: node.set_aside["site"] == 1, what="the message set aside")
        samples = await scrape(node.monitor.endpoint.url)
    assert value(samples, "guardlink_messages_set_aside_total", origin="site") == 1


async def test_camera_stats_show_as_gauges_and_dropped_frames_keep_counting_across_a_pipeline_restart(school, mosquitto, tmp_path):
    async with running_edge(with_metrics(school), mosquitto, mosquitto, tmp_path / "outbox.db") as node:
        node.monitor.camera_stats("gate", fps=24.5, dropped_frames=10, motion_share=0.125, cpu_percent=37.0)
        node.monitor.camera_stats("gate", fps=25.0, dropped_frames=12, motion_share=0.25, cpu_percent=40.0)
        node.monitor.camera_stats("gate", fps=12.0, dropped_frames=3, motion_share=0.0, cpu_percent=5.0)  # restarted: counts from 0
        samples = await scrape(node.monitor.endpoint.url)
    assert value(samples, "guardlink_camera_fps", camera="gate") == 12.0
    assert value(samples, "guardlink_camera_motion_ratio", camera="gate") == 0.0
    assert value(samples, "guardlink_camera_cpu_percent", camera="gate") == 5.0
    assert value(samples, "guardlink_camera_dropped_frames_total", camera="gate") == 15


async def test_the_endpoint_serves_only_get_metrics(school, mosquitto, tmp_path):
    async with running_edge(with_metrics(school), mosquitto, mosquitto, tmp_path / "outbox.db") as node:
        base = node.monitor.endpoint.url.removesuffix("/metrics")
        assert (await asyncio.to_thread(fetch, f"{base}/"))[0] == 404
        assert (await asyncio.to_thread(fetch, f"{base}/metrics", "POST"))[0] == 405
        status, _, body = await asyncio.to_thread(fetch, f"{base}/metrics", "HEAD")
        assert status == 200 and body == ""
        with socket.create_connection(("127.0.0.1", node.monitor.endpoint.port)) as idle:  # a scraper that never sends
            idle.sendall(b"GET /metr")
            assert (await asyncio.to_thread(fetch, f"{base}/metrics"))[0] == 200  # others are still served


async def test_a_taken_metrics_port_does_not_stop_the_edge(school, mosquitto, recorder, tmp_path):
    police = recorder(mosquitto, topics.police_escalations_filter())
    with socket.create_server(("127.0.0.1", 0)) as taken:
        config = with_metrics(school, f"127.0.0.1:{taken.getsockname()[1]}")
        async with running_edge(config, mosquitto, mosquitto, tmp_path / "outbox.db") as node:
            with SiteSimulator(school, mosquitto) as sim:
                await asyncio.to_thread(sim.press, "btn-gate")
                await wait_until(lambda: police.payloads(), what="the escalation without /metrics")
            assert node.monitor.endpoint is None


@pytest.mark.timeout(60)
async def test_guardlink_edge_serves_metrics_and_takes_influxdb_from_the_environment(
    school, mosquitto, victoria_metrics, spawn, tmp_path, monkeypatch
):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    monkeypatch.setenv("GUARDLINK_INFLUX_URL", victoria_metrics.url)
    monkeypatch.setenv("GUARDLINK_INFLUX_BUCKET", "school")
    monkeypatch.delenv("GUARDLINK_INFLUX_TOKEN", raising=False)
    edge = spawn(
        "edge", "--config", "firmware_configs/sites/school.yaml", "--broker", str(mosquitto), "--police-broker", str(mosquitto),
        "--outbox", str(tmp_path / "outbox.db"), "--metrics", f"127.0.0.1:{port}",
        stderr_path=tmp_path / "edge.log",
    )
    url = f"http://127.0.0.1:{port}/metrics"

    def serving() -> bool:
        assert edge.poll() is None, (tmp_path / "edge.log").read_text()
        try:
            return fetch(url)[0] == 200
        except OSError:
            return False

    await wait_until(serving, timeout_s=20, what="guardlink edge serving /metrics")
    samples = await scrape(url)
    assert value(samples, "guardlink_outbox_backlog") == 0
    series = await victoria_metrics.wait_for('{__name__="edge_backlog"}', lambda s: len(s) == 1)
    assert series[0]["metric"]["site"] == school.site.id
