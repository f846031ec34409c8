"""Home Assistant MQTT discovery: with `home_assistant:` in the site file, HA sees devices, guards and incidents."""

from __future__ import annotations

import asyncio
import json

from device_drivers.simulators import SiteSimulator
from edge.homeassistant import discovery
from guardlink import topics
from guardlink.siteconfig import HomeAssistant, SiteConfig

from conftest import running_edge, wait_until

SITE = "hohhot-no3-primary"


def with_home_assistant(school: SiteConfig) -> SiteConfig:
    return school.model_copy(update={"home_assistant": HomeAssistant()})


def test_discovery_has_three_entities_per_device_one_per_guard_and_two_for_the_site(school):
    messages = discovery(with_home_assistant(school), "homeassistant")
    assert len(messages) == 3 * len(school.devices) + len(school.guards) + 2
    docs = [json.loads(payload) for _, payload in messages]
    assert len({d["unique_id"] for d in docs}) == len(docs)
    assert all(t.startswith("homeassistant/") and t.endswith("/config") for t, _ in messages)
    assert all(d["availability_topic"] == topics.edge_status(SITE) and d["state_topic"].startswith(f"guardlink/{SITE}/") for d in docs)
    online = next(d for d in docs if d["unique_id"] == "guardlink_hohhot_no3_primary_btn_gate_online")
    assert (online["device_class"], online["state_topic"], online["device"]["model"]) == (
        "connectivity", topics.device_state(SITE, "btn-gate"), "zigbee2mqtt",
    )


async def test_home_assistant_sees_devices_guards_and_the_latest_incident(school, mosquitto, recorder, tmp_path):
    config = with_home_assistant(school)
    configs = recorder(mosquitto, "homeassistant/#")
    guards = recorder(mosquitto, topics.guard_state(SITE, "+"))
    incidents = recorder(mosquitto, topics.incidents_state(SITE))
    async with running_edge(config, mosquitto, mosquitto, tmp_path / "outbox.db"):
        expected = len(discovery(config, "homeassistant"))
        await wait_until(lambda: len(configs.messages) >= expected, what="every discovery config")
        await wait_until(lambda: len(guards.messages) >= len(config.guards), what="every guard's state")
        with SiteSimulator(config, mosquitto, seed=7) as sim:
            await asyncio.to_thread(sim.report_positions)
            await asyncio.to_thread(sim.press, "btn-gate")
            await wait_until(lambda: incidents.payloads(), what="the incident state")
            await wait_until(lambda: any(json.loads(p)["state"] == "offered" for p in guards.payloads()), what="a guard offered the job")
    latest = json.loads(incidents.payloads()[-1])
    assert latest["open"] == 1
    assert (latest["latest"]["kind"], latest["latest"]["device"], latest["latest"]["status"]) == ("panic", "btn-gate", "dispatched")
