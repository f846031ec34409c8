"""One message never takes the edge down: whatever fails while processing it stays with that message.

The message is set aside (counted, logged with its topic and digest, kept in the outbox's `set_aside` table)
and acknowledged, so the broker does not hand it back forever, and every other device is still served.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import string

import paho.mqtt.client as mqtt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_drivers.simulators import SiteSimulator
from edge.intake import Intake
from guardlink import topics
from guardlink.models import Escalation
from guardlink.siteconfig import BrokerUrl, SiteConfig

from conftest import running_edge, running_mosquitto, wait_until

SITE = "hohhot-no3-primary"


def escalated_devices(recorder) -> list[str]:
    return [Escalation.from_json(p).incident.device for p in recorder.payloads() if Escalation.from_json(p).revision == 1]


def publish(broker: BrokerUrl, messages: list[tuple[str, bytes]]) -> None:
    """Publish at QoS 1 and wait until the broker has every message."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for info in [client.publish(topic, payload, qos=1) for topic, payload in messages]:
            info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


async def test_a_native_wearables_last_will_and_its_online_do_not_stop_the_edge(school, mosquitto, police_mosquitto, recorder, tmp_path):
    police = recorder(police_mosquitto, topics.police_escalations_filter())
    availability = topics.device_availability(SITE, "wear-li")  # exactly the message of the report
    async with running_edge(school, mosquitto, police_mosquitto, tmp_path / "outbox.db") as node:
        await asyncio.to_thread(publish, mosquitto, [(availability, b"offline")])
        await wait_until(lambda: node.device_states.states["wear-li"].online is False, what="wear-li seen offline")
        await asyncio.to_thread(publish, mosquitto, [(availability, b"online")])
        await wait_until(lambda: node.device_states.states["wear-li"].online is True, what="wear-li seen online")
        with SiteSimulator(school, mosquitto) as sim:
            await asyncio.to_thread(sim.press, "btn-gate", "single")
            await wait_until(lambda: "btn-gate" in escalated_devices(police), what="a press after the Last Will")
        assert sum(node.set_aside.values()) == 0, "the availability path works: nothing had to be set aside"


async def test_a_message_that_fails_in_processing_is_set_aside_acknowledged_and_the_edge_goes_on(
    school, mosquitto, police_mosquitto, recorder, tmp_path
):
    police = recorder(police_mosquitto, topics.police_escalations_filter())
    outbox = tmp_path / "outbox.db"

    def broken_driver(payload, devices, now):
        raise RuntimeError("driver defect")

    with SiteSimulator(school, mosquitto) as sim:
        async with running_edge(school, mosquitto, police_mosquitto, outbox) as node:
            node.intake.routes["zigbee2mqtt/btn-gate"].decode = broken_driver
            await asyncio.to_thread(sim.press, "btn-gate", "single")
            await wait_until(lambda: node.set_aside["site"] == 1, what="the failing message set aside")
            await asyncio.to_thread(sim.press, "btn-yard", "single")
            await wait_until(lambda: "btn-yard" in escalated_devices(police), what="another device's press at the police")
            assert node.status()["set_aside"] == 1
        # Acknowledged: the persistent session does not hand the message back to the restarted edge (the broker
        # redelivers unacknowledged messages first, so it would come before the press below).
        async with running_edge(school, mosquitto, police_mosquitto, outbox) as node:
            await asyncio.to_thread(sim.press, "btn-hall", "single")
            await wait_until(lambda: "btn-hall" in escalated_devices(police), what="a press after the restart")
            assert node.set_aside["site"] == 0 and "btn-gate" not in escalated_devices(police)
    with sqlite3.connect(outbox) as db:
        [(origin, topic, error)] = db.execute("SELECT origin, topic, error FROM set_aside").fetchall()
    assert (origin, topic) == ("site", "zigbee2mqtt/btn-gate") and "RuntimeError: driver defect" in error


async def test_a_police_command_that_fails_is_set_aside_and_the_uplink_goes_on(school, mosquitto, police_mosquitto, recorder, tmp_path):
    police = recorder(police_mosquitto, topics.police_escalations_filter())
    async with running_edge(school, mosquitto, police_mosquitto, tmp_path / "outbox.db") as node:
        await wait_until(lambda: node.uplink.connected, what="the police uplink")

        def broken_command(command, now):
            raise RuntimeError("dispatcher defect")

        node.dispatcher.command = broken_command
        command = {"command": "acknowledge", "escalation": "x", "by": "desk-1"}
        await asyncio.to_thread(publish, police_mosquitto, [(node.uplink.commands_topic, json.dumps(command).encode())])
        await wait_until(lambda: node.set_aside["police"] == 1, what="the failing command set aside")
        with SiteSimulator(school, mosquitto) as sim:
            await asyncio.to_thread(sim.press, "btn-gate", "single")
            await wait_until(lambda: "btn-gate" in escalated_devices(police), what="a press after the failed command")


# --- The whole path, fuzzed --------------------------------------------------------------------------

SEGMENT = st.sampled_from(["wear-li", "btn-gate", "g-li", "nobody", "", "up", "state"]) | st.text(string.ascii_letters + "-_", max_size=8)
FIELDS = ["seq", "boot", "ts", "type", "action", "lat", "lon", "acc", "press", "battery", "hr", "min_g", "max_g", "tilt_deg", "still",
          "state", "answer", "escalation", "event", "_type", "tst", "contact", "smoke", "water_leak", "tamper", "before", "after"]
VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64) | st.floats(allow_nan=True) | st.text(max_size=12)
    | st.sampled_from(["sos", "position", "motion", "vitals", "battery", "press", "status", "single", "long", "offline", "accept", "new"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELDS), inner, max_size=3),
    max_leaves=8,
)
PAYLOAD = (
    st.binary(max_size=64)
    | st.sampled_from([b"online", b"offline", b"true", b"ON", b"", b"null", b"[]", b"{}"])
    | st.dictionaries(st.sampled_from(FIELDS), VALUE, max_size=8).map(lambda d: json.dumps(d).encode())
)


def site_topics(config: SiteConfig) -> st.SearchStrategy[str]:
    """Topics from the site's own subscriptions: exact device topics, and the wildcard filters with any segment."""
    filters = [*Intake(config).filters, topics.guard_reply(SITE, "+")]

    def fill(topic_filter: str, segments: list[str]) -> str:
        parts = [segments.pop() if part in "+#" and segments else part for part in topic_filter.split("/")]
        return "/".join(parts).replace("+", "x").replace("#", "x")

    return st.sampled_from(sorted(Intake(config).routes)) | st.builds(fill, st.sampled_from(filters), st.lists(SEGMENT, min_size=3, max_size=3))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_message_on_any_subscribed_topic_leaves_the_edge_up_and_escalating(school, tmp_path_factory, data):
    messages = data.draw(st.lists(st.tuples(site_topics(school), PAYLOAD), min_size=50, max_size=150), label="messages")
    workdir = tmp_path_factory.mktemp("fuzz")
    asyncio.run(_fuzz_whole_path(school, workdir, messages))


async def _fuzz_whole_path(school: SiteConfig, workdir, messages: list[tuple[str, bytes]]) -> None:
    with running_mosquitto(workdir / "site") as site, running_mosquitto(workdir / "police") as police_broker:
        from conftest import Recorder

        police = Recorder(police_broker, topics.police_escalations_filter())
        try:
            async with running_edge(school, site, police_broker, workdir / "outbox.db") as node:
                await asyncio.to_thread(publish, site, messages)
                with SiteSimulator(school, site) as sim:
                    await asyncio.to_thread(sim.press, "btn-gate", "single")
                    await wait_until(lambda: "btn-gate" in escalated_devices(police), timeout_s=20, what="a real press after the fuzz")
                assert node.site_connected, "the edge is still on the site broker"
                assert not node.set_aside, f"bad input is rejected and counted, not a processing failure: {dict(node.set_aside)}"
        finally:
            police.close()
