"""Simulated site devices publishing their native payloads with paho: buttons, wearables, phones."""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from device_drivers import guardlink_wearable, owntracks, zigbee2mqtt
from device_drivers.registry import driver
from guardlink.geo import EARTH_RADIUS_M, LatLon
from guardlink.siteconfig import BrokerUrl, Device, SiteConfig

log = logging.getLogger(__name__)

PRESSABLE = {"zigbee2mqtt", "guardlink_wearable"}
WEARABLES = {"guardlink_wearable", "owntracks"}


@dataclass(slots=True)
class Walker:
    """A guard's simulated position: a random walk that stays near the site."""

    point: LatLon
    heading: float
    accuracy_m: float = 10.0  # as last reported

    def step(self, rng: random.Random, home: LatLon, metres: float, radius_m: float) -> None:
        """Walk `metres`, turning back towards home when beyond `radius_m`."""
        dn, de = _offset_m(home, self.point)
        if math.hypot(dn, de) > radius_m:
            self.heading = math.atan2(-de, -dn)
        self.heading += rng.uniform(-0.6, 0.6)
        self.point = _moved(self.point, metres * math.cos(self.heading), metres * math.sin(self.heading))


class SiteSimulator:
    """The devices of one site, simulated against a real broker."""

    def __init__(self, config: SiteConfig, broker: BrokerUrl, *, seed: int | None = None, radius_m: float = 250.0) -> None:
        self.config = config
        self.broker = broker
        self.rng = random.Random(seed)
        self.radius_m = radius_m
        self.home = config.site.location.point()
        self.walkers = {
            d.id: Walker(_moved(self.home, self.rng.uniform(-radius_m, radius_m), self.rng.uniform(-radius_m, radius_m)), 0.0)
            for d in config.devices
            if d.driver in WEARABLES
        }
        self.pressable = [d for d in config.devices if d.driver in PRESSABLE]
        self.pressed: dict[str, float] = {}  # device -> time of its latest press, set before publishing
        self._seq: dict[str, int] = {}
        self._in_flight: list[mqtt.MQTTMessageInfo] = []
        self._connected = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"guardlink-sim-{config.site.id}-{self.rng.getrandbits(32):08x}")
        if broker.username:
            self._client.username_pw_set(broker.username, broker.password)
        self._client.on_connect = lambda client, userdata, flags, reason, props: self._connected.set() if not reason.is_failure else None

    def __enter__(self) -> SiteSimulator:
        self._client.connect(self.broker.host, self.broker.port, keepalive=30)
        self._client.loop_start()
        if not self._connected.wait(10):
            self._client.loop_stop()
            raise ConnectionError(f"simulator could not connect to {self.broker} within 10 s")
        return self

    def __exit__(self, *exc: object) -> None:
        self.wait_published()
        self._client.disconnect()
        self._client.loop_stop()

    def wait_published(self, timeout_s: float = 10.0) -> None:
        """Block until the broker has acknowledged everything published so far."""
        deadline = time.monotonic() + timeout_s
        for info in self._in_flight:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        self._in_flight.clear()

    def report_positions(self, step_m: float = 4.0) -> None:
        """Every wearable walks a step and reports where it is."""
        for device_id, walker in self.walkers.items():
            walker.step(self.rng, self.home, step_m, self.radius_m)
            device = self.config.device(device_id)
            accuracy = walker.accuracy_m = round(self.rng.uniform(3, 12), 1)
            if device.driver == "owntracks":
                payload = owntracks.location_payload(walker.point, accuracy, time.time(), battery=self.rng.randint(20, 100))
            else:
                payload = guardlink_wearable.position_payload(self._next_seq(device_id), walker.point, accuracy)
            self._publish(device, payload)

    def press(self, device_id: str, action: str = "single") -> float:
        """Press the device's alarm button (a Zigbee button's action, or a wearable's SOS); returns the press time."""
        device = self.config.device(device_id)
        if device is None or device.driver not in PRESSABLE:
            raise ValueError(f"{device_id!r} is not a button or wearable of site {self.config.site.id}")
        if device.driver == "zigbee2mqtt":
            payload = zigbee2mqtt.button_payload(action, battery=self.rng.randint(40, 100), linkquality=self.rng.randint(60, 255))
        else:
            payload = guardlink_wearable.sos_payload(self._next_seq(device_id), "long" if action == "long" else "short")
        pressed_at = self.pressed[device_id] = time.time()
        self._publish(device, payload)
        return pressed_at

    def publish_raw(self, topic: str, payload: bytes) -> None:
        """Publish anything (for bad-input tests and fuzzing)."""
        self._client.publish(topic, payload, qos=1).wait_for_publish(10)

    def run(
        self,
        duration_s: float | None,
        *,
        press_every_s: float = 3.0,
        positions_every_s: float = 1.0,
        stop: threading.Event | None = None,
    ) -> int:
        """Walk guards and press a random button every `press_every_s` until the duration ends or `stop` is set."""
        stop = stop or threading.Event()
        start = time.monotonic()
        next_press = start + min(press_every_s, 1.5)  # let positions arrive before the first press
        next_positions = start
        presses = 0
        while not stop.is_set() and (duration_s is None or time.monotonic() - start < duration_s):
            now = time.monotonic()
            if now >= next_positions:
                self.report_positions()
                next_positions += positions_every_s
            if now >= next_press and self.pressable:
                device = self.rng.choice(self.pressable)
                self.press(device.id)
                presses += 1
                next_press += press_every_s * self.rng.uniform(0.6, 1.4)
            stop.wait(max(0.0, min(next_positions, next_press) - time.monotonic()))
        return presses

    def _publish(self, device: Device, payload: bytes) -> None:
        topic = driver(device.driver).topic_for(self.config.site.id, device)
        self._in_flight = [i for i in self._in_flight if not i.is_published()]
        self._in_flight.append(self._client.publish(topic, payload, qos=1))

    def _next_seq(self, device_id: str) -> int:
        self._seq[device_id] = self._seq.get(device_id, -1) + 1
        return self._seq[device_id]


def _offset_m(origin: LatLon, point: LatLon) -> tuple[float, float]:
    """North and east offsets in metres (equirectangular: fine at site scale)."""
    north = math.radians(point.lat - origin.lat) * EARTH_RADIUS_M
    east = math.radians(point.lon - origin.lon) * EARTH_RADIUS_M * math.cos(math.radians(origin.lat))
    return north, east


def _moved(point: LatLon, north_m: float, east_m: float) -> LatLon:
    lat = point.lat + math.degrees(north_m / EARTH_RADIUS_M)
    lon = point.lon + math.degrees(east_m / (EARTH_RADIUS_M * math.cos(math.radians(point.lat))))
    return LatLon(lat, lon)
