"""The driver registry is the one place that knows a device family: a family registered here, and nowhere else, is
pressed, walked and made to talk by the simulator, gets its pushed configurations to verify, and gets the broker
account it needs (its own, or its bridge's)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from cli.simulate import _meaning
from device_drivers.driver import Driver, Health, SimulatedSite, Simulation
from device_drivers.registry import DRIVERS
from device_drivers.simulators import SiteSimulator, with_simulated_devices
from edge.broker_access import users_for
from gateway.connection import threaded_client
from guardlink import topics
from guardlink.geo import LatLon
from guardlink.models import Event
from guardlink.provisioning import create_keys, load_public_key
from guardlink.siteconfig import BrokerUrl, Device, SiteConfig

from conftest import wait_until


def _decode(payload: bytes, device: Device, now: float) -> list[Event]:
    return []


def _pendant_press(sim: SimulatedSite, device: Device, action: str) -> bytes:
    return json.dumps({"sos": action, "n": sim.next_seq(device.id)}).encode()


def _pendant_position(sim: SimulatedSite, device: Device, point: LatLon, accuracy_m: float) -> bytes:
    return json.dumps({"at": [point.lat, point.lon], "acc": accuracy_m}).encode()


def _pendant_everyday(sim: SimulatedSite, device: Device, health: Health) -> tuple[str, bytes]:
    return sim.topic(device), json.dumps({"battery": health[0]}).encode()


def _sensor_everyday(sim: SimulatedSite, device: Device, health: Health) -> tuple[str, bytes]:
    return sim.topic(device), b'{"dry": true}'


PENDANT = Driver(  # a worn SOS pendant with its own firmware and connection
    name="acme_pendant",
    summary="Acme SOS pendant",
    watch=lambda site: (f"acme/{site}/+",),
    default_topic=lambda site, device: f"acme/{site}/{device}",
    decode=_decode,
    heartbeat_s=60.0,
    actions=("single", "hold"),
    sos_key=True,
    wearable=True,
    verifies_configs=True,
    simulate=Simulation(everyday=_pendant_everyday, press=_pendant_press, position=_pendant_position),
)
LEAK_SENSOR = Driver(  # sensors that never connect: their hub publishes for them
    name="acme_sensor",
    summary="Acme leak sensors behind the Acme hub",
    watch=lambda site: ("acmehub/+",),
    default_topic=lambda site, device: f"acmehub/{device}",
    decode=_decode,
    heartbeat_s=3600.0,
    bridge_user="acmehub",
    simulate=Simulation(everyday=_sensor_everyday),
)


class Published:
    """What paho's publish returns, already acknowledged."""

    def wait_for_publish(self, timeout: float | None = None) -> None:
        return None

    def is_published(self) -> bool:
        return True


@dataclass
class RecordingClient:
    """Stands in for the paho client the simulator is given: records what it publishes and subscribes."""

    broker: BrokerUrl
    client_id: str
    published: list[tuple[str, bytes]] = field(default_factory=list)
    subscribed: list[str] = field(default_factory=list)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> Published:
        self.published.append((topic, payload))
        return Published()

    def subscribe(self, filters: list[tuple[str, int]]) -> None:
        self.subscribed += [f for f, _ in filters]


@dataclass
class Connected:
    is_failure: bool = False


@pytest.fixture
def acme_site(school: SiteConfig, monkeypatch: pytest.MonkeyPatch) -> SiteConfig:
    """The school with an Acme pendant and an Acme leak sensor, their families registered for the test only."""
    monkeypatch.setitem(DRIVERS, PENDANT.name, PENDANT)
    monkeypatch.setitem(DRIVERS, LEAK_SENSOR.name, LEAK_SENSOR)
    devices = [Device(id="pendant-1", driver="acme_pendant"), Device(id="leak-1", driver="acme_sensor")]
    return school.model_copy(update={"devices": [*school.devices, *devices]})


def _simulator(config: SiteConfig, **options: object) -> tuple[SiteSimulator, RecordingClient]:
    made: list[RecordingClient] = []

    def client(broker: BrokerUrl, *, client_id: str) -> RecordingClient:
        made.append(RecordingClient(broker, client_id))
        return made[-1]

    simulator = SiteSimulator(config, BrokerUrl(host="127.0.0.1", port=1), seed=3, mqtt_client=client, **options)
    return simulator, made[0]


def test_a_registered_family_is_pressed_walked_and_talks_in_the_simulator(acme_site: SiteConfig):
    sim, client = _simulator(acme_site)
    assert "pendant-1" in {d.id for d in sim.pressable} and "leak-1" not in {d.id for d in sim.pressable}
    assert "pendant-1" in sim.walkers, "a wearable family walks with its guard"
    sim.press("pendant-1", "hold")
    assert client.published[-1] == ("acme/hohhot-no3-primary/pendant-1", b'{"sos": "hold", "n": 0}')
    with pytest.raises(ValueError, match=r"\(acme_pendant\) cannot send 'double' \(it can: single, hold\)"):
        sim.press("pendant-1", "double")
    sim.report_positions()
    point = sim.walkers["pendant-1"].point
    assert client.published[-1] == ("acme/hohhot-no3-primary/pendant-1", _pendant_position(sim, sim.config.device("pendant-1"), point, sim.walkers["pendant-1"].accuracy_m))
    topic, payload = sim.routine(acme_site.device("leak-1"))
    assert (topic, payload) == ("acmehub/leak-1", b'{"dry": true}')
    assert _meaning(acme_site.device("pendant-1"), "single") == "", "an SOS key's press is always an alarm"


def test_generated_devices_cover_a_registered_family_and_leave_wearables_unplaced(acme_site: SiteConfig):
    config = with_simulated_devices(acme_site, len(acme_site.devices) + 2 * len(DRIVERS))
    generated = [d for d in config.devices if d.id.startswith("sim-")]
    assert {d.driver for d in generated} == set(DRIVERS)
    assert all(d.location is None for d in generated if d.driver == "acme_pendant")
    assert all(d.location is not None for d in generated if d.driver == "acme_sensor")


def test_a_family_that_verifies_configs_is_given_them(acme_site: SiteConfig, tmp_path):
    _, public_path = create_keys(tmp_path)
    sim, client = _simulator(acme_site, public_key=load_public_key(public_path.read_text()))
    sim._on_connect(client, None, None, Connected(), None)  # what paho calls once connected
    config_topics = {t for t in client.subscribed if t.endswith("/config")}
    assert topics.device_config("hohhot-no3-primary", "pendant-1") in config_topics
    assert topics.device_config("hohhot-no3-primary", "leak-1") not in config_topics
    assert config_topics >= {topics.device_config("hohhot-no3-primary", d.id) for d in acme_site.devices if d.driver == "guardlink_wearable"}


def test_broker_access_gives_a_family_its_own_account_or_its_bridge(acme_site: SiteConfig):
    users = {u.name: u for u in users_for(acme_site)}
    assert users["pendant-1"].write[0] == "acme/hohhot-no3-primary/pendant-1"
    assert "leak-1" not in users, "a bridged sensor never connects"
    assert users["acmehub"].readwrite == ["acmehub/#"] and users["acmehub"].role == "acme_sensor bridge"
    assert set(users["edge"].read) >= {"acme/hohhot-no3-primary/+", "acmehub/+"}


async def test_the_simulator_publishes_through_the_mqtt_adapters_client(school: SiteConfig, mosquitto: BrokerUrl, recorder):
    seen = recorder(mosquitto, "zigbee2mqtt/#")
    with SiteSimulator(school, mosquitto, seed=1, mqtt_client=threaded_client) as sim:
        sim.press("btn-gate")
    await wait_until(lambda: len(seen.payloads()) == 1, what="the press")
    assert json.loads(seen.payloads()[0])["action"] == "single"
