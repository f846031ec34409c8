"""Every device family, simulated on a real mosquitto, reaches the police through the edge — and what must not, does not."""

from __future__ import annotations

import asyncio

from device_drivers import guardlink_button, zigbee2mqtt
from device_drivers.registry import DRIVERS
from device_drivers.simulators import SiteSimulator
from guardlink import topics
from guardlink.models import Escalation
from guardlink.siteconfig import Device, SiteConfig

from conftest import running_edge, wait_until

SITE = "hohhot-no3-primary"
PRESSABLE = {name for name, family in DRIVERS.items() if family.actions}
EXTRA = [
    {"id": "btn-shelly", "driver": "shelly", "topic": "shellies/shellybutton1-C45BBE", "zone": "hall"},
    {"id": "in-lobby", "driver": "shelly_rpc", "topic": "shellyplusi4-a8032ab1/events/rpc", "channel": 1, "test_actions": ["double"]},
    {"id": "btn-tasmota", "driver": "tasmota", "topic": "stat/tasmota_5A1B2C/RESULT", "channel": 2},
    {"id": "btn-office", "driver": "guardlink_button", "duress_actions": ["long"]},
    {"id": "gate_cam", "driver": "frigate", "location": {"lat": 40.8424, "lon": 111.7504}, "zone": "main-gate"},
    {"id": "leak-boiler", "driver": "zigbee2mqtt"},
]


def with_every_family(school: SiteConfig) -> SiteConfig:
    devices = [Device.model_validate(d) for d in EXTRA]
    devices[0] = devices[0].model_copy(update={"topic": "shellies/shellybutton1-C45BBE/input_event/0"})
    return school.model_copy(update={"devices": [*school.devices, *devices]})


def shown(recorder) -> list[Escalation]:
    return [Escalation.from_json(p) for p in recorder.payloads()]


async def test_a_press_on_every_button_family_escalates_once(school, mosquitto, recorder, tmp_path):
    config = with_every_family(school)
    police = recorder(mosquitto, topics.police_escalations_filter())
    async with running_edge(config, mosquitto, mosquitto, tmp_path / "outbox.db") as node:
        with SiteSimulator(config, mosquitto, seed=4) as sim:
            families = {}
            for device in config.devices:
                if device.driver in PRESSABLE and device.driver not in families:
                    families[device.driver] = device.id
            for device_id in families.values():
                await asyncio.to_thread(sim.press, device_id)
            await asyncio.to_thread(sim.press, "btn-office", "long")
            await asyncio.to_thread(sim.press, "in-lobby", "double")
            await asyncio.to_thread(sim.detect, "gate_cam", "fence")
            expected = len(families) + 3
            await wait_until(lambda: sum(e.revision == 1 for e in shown(police)) >= expected, what="an escalation per press")
            await asyncio.sleep(0.2)
    first = {(e.incident.device, e.incident.kind.value) for e in shown(police) if e.revision == 1}
    assert first == {(d, "sos" if d.startswith("wear") else "panic") for d in families.values()} | {
        ("btn-office", "duress"), ("in-lobby", "test"), ("gate_cam", "intrusion"),
    }
    assert set(families) == PRESSABLE
    assert node.intake.rejections.total == 0
    test = next(e for e in shown(police) if e.incident.kind.value == "test")
    assert (test.status.value, test.assignments) == ("reported", []), "a test press sends nobody"
    intrusion = next(e for e in shown(police) if e.incident.kind.value == "intrusion")
    assert (intrusion.incident.zone, intrusion.incident.detail) == ("main-gate", "person entered fence (camera gate_cam)")


async def test_a_leak_is_one_escalation_resolved_when_it_dries(school, mosquitto, recorder, tmp_path):
    config = with_every_family(school)
    police = recorder(mosquitto, topics.police_escalations_filter())
    async with running_edge(config, mosquitto, mosquitto, tmp_path / "outbox.db"):
        with SiteSimulator(config, mosquitto) as sim:
            for state in (True, True, True, False):
                await asyncio.to_thread(sim.publish_raw, "zigbee2mqtt/leak-boiler", zigbee2mqtt.sensor_payload("water_leak", state, 88, 3000, 90))
            await wait_until(lambda: len(police.payloads()) >= 2, what="raised and resolved")
            await asyncio.sleep(0.2)
    [raised, resolved] = shown(police)
    assert (raised.incident.kind.value, raised.revision, resolved.id, resolved.revision, resolved.status.value) == (
        "water_leak", 1, raised.id, 2, "resolved",
    )


async def test_retained_and_replayed_presses_do_not_escalate(school, mosquitto, recorder, tmp_path):
    config = with_every_family(school)
    police = recorder(mosquitto, topics.police_escalations_filter())
    native = topics.native_device_uplink(SITE, "btn-office")
    with SiteSimulator(config, mosquitto) as sim:
        # A press left retained on the broker (a misconfigured bridge) is handed to the edge when it subscribes.
        await asyncio.to_thread(sim.publish_raw, "zigbee2mqtt/btn-hall", zigbee2mqtt.button_payload("single"), retain=True)
        async with running_edge(config, mosquitto, mosquitto, tmp_path / "outbox.db") as node:
            await wait_until(lambda: node.intake.rejections.counts[("btn-hall", "retained_alarm")] == 1, what="the retained press dropped")
            press = guardlink_button.press_payload(41, boot=7)
            for _ in range(3):  # the real press, then two replays of it
                await asyncio.to_thread(sim.publish_raw, native, press)
            await wait_until(lambda: node.intake.rejections.counts[("btn-office", "replayed_seq")] == 2, what="replays dropped")
            # An older press that was never taken is a real one delivered out of order: it counts, once.
            for _ in range(2):
                await asyncio.to_thread(sim.publish_raw, native, guardlink_button.press_payload(40, boot=7))
            await wait_until(lambda: node.intake.rejections.counts[("btn-office", "replayed_seq")] == 3, what="its copy dropped")
            await asyncio.sleep(0.2)
        await asyncio.to_thread(sim.publish_raw, "zigbee2mqtt/btn-hall", b"", retain=True)  # clear it
    assert sorted((e.incident.device, e.incident.device_seq) for e in shown(police)) == [("btn-office", 40), ("btn-office", 41)]
