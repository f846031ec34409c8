"""Bad and hostile payloads are rejected, counted per device and logged; the edge keeps escalating."""

from __future__ import annotations

import asyncio
import logging

from device_drivers.simulators import SiteSimulator
from edge.intake import UNKNOWN_DEVICE
from guardlink import topics
from guardlink.models import Escalation

from conftest import running_edge, wait_until

BAD = [
    ("zigbee2mqtt/btn-gate", b"{not json", ("btn-gate", "malformed_json")),
    ("zigbee2mqtt/btn-gate", b'{"action": 5}', ("btn-gate", "wrong_type")),
    ("zigbee2mqtt/btn-hall", b'{"battery": "high"}', ("btn-hall", "wrong_type")),
    ("zigbee2mqtt/btn-hall", b'{"action": "self_destruct"}', ("btn-hall", "unknown_action")),
    ("zigbee2mqtt/btn-hall", b'{"action": "single", "battery": 250}', ("btn-hall", "out_of_range")),
    ("zigbee2mqtt/Yard Button", b"[1, 2, 3]", ("btn-yard", "not_an_object")),
    ("zigbee2mqtt/Yard Button", b'{"action": "' + b"x" * (1024 * 1024) + b'"}', ("btn-yard", "too_large")),
    ("zigbee2mqtt/intruder", b'{"action": "single"}', (UNKNOWN_DEVICE, "unknown_device")),
    ("guardlink/hohhot-no3-primary/dev/wear-li/up", b'{"type": "sos"}', ("wear-li", "missing_field")),
    ("guardlink/hohhot-no3-primary/dev/wear-li/up", b"\xff\xfe\x00", ("wear-li", "malformed_json")),
]


async def test_bad_payloads_are_counted_and_logged_and_the_next_press_still_escalates(school, mosquitto, recorder, caplog, tmp_path):
    caplog.set_level(logging.WARNING, logger="edge.intake")
    police = recorder(mosquitto, topics.police_escalations_filter())
    async with running_edge(school, mosquitto, mosquitto, tmp_path / "outbox.db") as node:
        with SiteSimulator(school, mosquitto, seed=5) as sim:
            for topic, payload, _ in BAD:
                await asyncio.to_thread(sim.publish_raw, topic, payload)
            await wait_until(lambda: node.intake.rejections.total == len(BAD), what="every bad payload counted")
            await asyncio.to_thread(sim.press, "btn-gate")
            await wait_until(lambda: police.payloads(), what="the real press escalating after the bad ones")
            await asyncio.sleep(0.3)

    expected = {}
    for _, _, key in BAD:
        expected[key] = expected.get(key, 0) + 1
    assert dict(node.intake.rejections.counts) == expected
    [payload] = police.payloads()
    assert Escalation.from_json(payload).incident.device == "btn-gate"
    logged = [r.getMessage() for r in caplog.records if "payload_rejected" in r.getMessage()]
    for _, _, (device, reason) in BAD:
        assert any(f"device={device} reason={reason}" in line for line in logged), (device, reason)


def test_a_flood_of_the_same_rejection_is_logged_once_per_interval(caplog):
    from edge.intake import Rejections

    caplog.set_level(logging.WARNING, logger="edge.intake")
    rejections = Rejections(log_every_s=10)
    for i in range(1000):
        rejections.record("btn-gate", "malformed_json", "x", now=100.0 + i * 0.001)
    rejections.record("btn-gate", "malformed_json", "x", now=111.0)
    assert rejections.counts[("btn-gate", "malformed_json")] == 1001
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "suppressed_since_last=999" in lines[1]
