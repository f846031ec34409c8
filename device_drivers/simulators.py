"""Simulated site devices publishing their native payloads with paho — every family in the driver registry: buttons
(Zigbee2MQTT, Shelly Gen1 and Gen2, Tasmota, native), sensors, Frigate cameras, wearables and phones — and the
guards wearing them, who answer offers, walk to incidents, report arriving and resolving, and sometimes fall.

What each family's devices send is the family's own business: its driver entry's `simulate` hooks, next to its
decoder. The simulator keeps the people, the clock and the connection: the MQTT client comes from the caller
(`gateway.connection.threaded_client`, with TLS and credentials), or a plain one for tests.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import json
import logging
import math
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from device_drivers.driver import Health
from device_drivers.registry import DRIVERS, driver
from guardlink import topics
from guardlink.geo import EARTH_RADIUS_M, LatLon, haversine_m
from guardlink.provisioning import ConfigRefused, ConfigReport, SignedConfig, verify_config
from guardlink.siteconfig import BrokerUrl, Device, SiteConfig

log = logging.getLogger(__name__)

ARRIVED_M = 10.0


class MqttClientFactory(Protocol):
    """Makes the simulator's paho client for `broker` (credentials and TLS set, not yet connected):
    `gateway.connection.threaded_client` is one."""

    def __call__(self, broker: BrokerUrl, *, client_id: str) -> mqtt.Client: ...


def plain_client(broker: BrokerUrl, *, client_id: str) -> mqtt.Client:
    """A paho client with `broker`'s username and password, without TLS (enough for tests on a loopback broker)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    return client


def pressable(device: Device) -> bool:
    """The device has a button (or an SOS key) the simulator can press."""
    return bool(driver(device.driver).actions)


def worn(device: Device) -> bool:
    """A guard wears the device: it walks with the guard and reports where it is."""
    return driver(device.driver).wearable


@dataclass(frozen=True, slots=True)
class GuardHabits:
    """How simulated guards behave: like people on a normal day (most accept, a few decline, hardly anyone lets an
    offer time out), with the walk and the work at the scene in time-lapse so a demo shows whole incidents."""

    accept: float = 0.85  # share of offers accepted
    decline: float = 0.12  # share declined; the rest are ignored (the offer times out)
    react_s: tuple[float, float] = (0.5, 2.5)
    walk_speed_mps: float = 8.0  # faster than life, so a demo shows arrivals within seconds
    arrive_within_s: float | None = 8.0  # time-lapse: a long walk is sped up to take at most this long (None: real pace)
    false_alarm: float = 0.2
    resolve_after_s: tuple[float, float] = (2.0, 5.0)
    falls_every_s: float | None = 300.0  # mean time between a guard falling somewhere on site; None = never
    cancel_prealarm: float = 0.3  # share of man-down pre-alarms the fallen guard cancels


@dataclass(slots=True)
class Walker:
    """A guard's simulated position: a random walk that stays near the site, or a walk to an incident."""

    point: LatLon
    heading: float
    accuracy_m: float = 10.0  # as last reported
    target: LatLon | None = None
    job: str | None = None  # escalation walked to
    speed_mps: float = 1.4  # on the way to `target`
    on_scene: bool = False
    fallen_since: float | None = None

    def step(self, rng: random.Random, home: LatLon, metres: float, radius_m: float) -> None:
        """Walk `metres`, turning back towards home when beyond `radius_m`."""
        dn, de = _offset_m(home, self.point)
        if math.hypot(dn, de) > radius_m:
            self.heading = math.atan2(-de, -dn)
        self.heading += rng.uniform(-0.6, 0.6)
        self.point = _moved(self.point, metres * math.cos(self.heading), metres * math.sin(self.heading))

    def towards(self, metres: float) -> bool:
        """Walk `metres` towards the target; True on arrival."""
        assert self.target is not None
        dn, de = _offset_m(self.point, self.target)
        left = math.hypot(dn, de)
        if left <= max(metres, ARRIVED_M):
            self.point = self.target
            return True
        self.point = _moved(self.point, dn / left * metres, de / left * metres)
        return False


@dataclass(order=True, slots=True)
class _Action:
    at: float
    order: int
    run: Callable[[], None] = field(compare=False)


class SiteSimulator:
    """The devices of one site, simulated against a real broker; with `habits`, the guards act too."""

    def __init__(
        self,
        config: SiteConfig,
        broker: BrokerUrl,
        *,
        seed: int | None = None,
        radius_m: float = 250.0,
        habits: GuardHabits | None = None,
        public_key: Ed25519PublicKey | None = None,
        mqtt_client: MqttClientFactory = plain_client,
    ) -> None:
        self.config = config
        self.broker = broker
        self.rng = random.Random(seed)
        self.radius_m = radius_m
        self.habits = habits
        self.public_key = public_key  # with it, native devices verify, apply and report pushed configurations
        self.applied: dict[str, SignedConfig] = {}  # device -> the configuration it runs
        self.home = config.site.location.point()
        self.walkers = {
            d.id: Walker(_moved(self.home, self.rng.uniform(-radius_m, radius_m), self.rng.uniform(-radius_m, radius_m)), 0.0)
            for d in config.devices
            if worn(d)
        }
        self.wearable_of = {g.id: g.wearable for g in config.guards if g.wearable in self.walkers}
        self.pressable = [d for d in config.devices if pressable(d)]
        self.pressed: dict[str, float] = {}  # device -> time of its latest press, set before publishing
        self.sent = 0  # messages published
        self.boot = time.time_ns() // 1_000_000  # native devices' boot counter: a new simulator is a new boot
        self._seq: dict[str, int] = {}
        self._in_flight: list[mqtt.MQTTMessageInfo] = []
        self._prune_at = 1000
        self._health: dict[str, tuple[int, int]] = {}  # device -> (battery %, link quality) it reports
        self._inbox: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
        self._agenda: list[_Action] = []
        self._order = itertools.count()
        self._connected = threading.Event()
        self._client = mqtt_client(broker, client_id=f"guardlink-sim-{config.site.id}-{self.rng.getrandbits(32):08x}")
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message

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

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: mqtt.ReasonCode, props: object) -> None:
        if reason.is_failure:
            return
        site = self.config.site.id
        if self.habits is not None:
            client.subscribe([(topics.guard_offer(site, "+"), 1), (topics.guard_alert(site, "+"), 1)])
        if self.public_key is not None:
            verifying = [d.id for d in self.config.devices if driver(d.driver).verifies_configs]
            if verifying:
                client.subscribe([(topics.device_config(site, d), 1) for d in verifying])
        self._connected.set()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/config"):
            self._configure(message.topic.split("/")[-2], bytes(message.payload))
        else:
            self._inbox.put((message.topic, bytes(message.payload)))

    def _configure(self, device: str, payload: bytes) -> None:
        """What native firmware does with a pushed configuration: verify, apply, report (retained)."""
        site = self.config.site.id
        current = self.applied.get(device)
        if self.public_key is None:
            return  # without the site's key the devices do not subscribe to their configurations
        try:
            signed = verify_config(payload, self.public_key, site=site, device=device, applied_version=current.version if current else 0)
        except ConfigRefused as exc:
            report = ConfigReport(status="refused", version=current.version if current else None, reason=exc.reason)
            log.warning("event=config_refused device=%s reason=%s", device, exc.reason)
        else:
            self.applied[device] = signed
            report = ConfigReport(status="applied", version=signed.version)
        self._client.publish(topics.device_config_applied(site, device), report.model_dump_json().encode(), qos=1, retain=True)

    def wait_published(self, timeout_s: float = 10.0) -> None:
        """Block until the broker has acknowledged everything published so far."""
        deadline = time.monotonic() + timeout_s
        lost = 0
        for info in self._in_flight:
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError):  # published while the broker was gone (paho resends it on reconnect)
                lost += 1
        if lost:
            log.warning("event=simulator_publishes_unconfirmed count=%d reason=broker_disconnected", lost)
        self._in_flight.clear()

    # -- devices ---------------------------------------------------------------------------------

    def report_positions(self, step_m: float = 4.0, elapsed_s: float = 1.0) -> None:
        """Every wearable moves (a step of its random walk, or towards its incident) and reports where it is."""
        for device_id, walker in self.walkers.items():
            if walker.fallen_since is not None or walker.on_scene:
                pass  # lying down, or busy at the incident
            elif walker.target is not None and self.habits is not None:
                if walker.towards(walker.speed_mps * elapsed_s):
                    self._arrived(device_id, walker)
            else:
                walker.step(self.rng, self.home, step_m, self.radius_m)
            device = self._device(device_id)
            accuracy = walker.accuracy_m = round(self.rng.uniform(3, 12), 1)
            position = driver(device.driver).simulate.position
            if position is None:
                raise NotImplementedError(f"{device.driver} is a wearable without a simulated position report")
            self._publish(device, position(self, device, walker.point, accuracy))

    def report_motion(self) -> None:
        """Every wearable with an accelerometer sends its one-second summary (and now and then a heart rate)."""
        for device_id, walker in self.walkers.items():
            device = self._device(device_id)
            motion = driver(device.driver).simulate.motion
            for payload in motion(self, device, walker.fallen_since is not None) if motion else ():
                self._publish(device, payload)

    def fall(self, device_id: str) -> None:
        """The guard wearing `device_id` falls: free fall, impact, then lies still until helped."""
        walker = self.walkers[device_id]
        device = self._device(device_id)
        fall = driver(device.driver).simulate.fall
        if fall is None:
            raise ValueError(f"{device_id!r} ({device.driver}) cannot sense a fall")
        walker.fallen_since, walker.target, walker.job = time.time(), None, None
        for payload in fall(self, device):
            self._publish(device, payload)
        log.info("event=simulated_fall device=%s", device_id)

    def press(self, device_id: str, action: str = "single") -> float:
        """Press the device's button with a guardlink action (single, double, triple, hold, long); a wearable's
        `long` is its silent SOS. Returns the press time."""
        device = self.pressable_device(device_id, action)
        press = driver(device.driver).simulate.press
        if press is None:
            raise NotImplementedError(f"{device.driver} has actions but no simulated press")
        payload = press(self, device, action)
        pressed_at = self.pressed[device_id] = time.time()
        self._send(self.topic(device), payload)
        return pressed_at

    def pressable_device(self, device_id: str, action: str) -> Device:
        """The button or wearable `device_id`, if it can send `action`; ValueError saying what can be pressed instead."""
        device = self.config.device(device_id)
        if device is None or not pressable(device):
            known = ", ".join(d.id for d in self.pressable) or "none"
            raise ValueError(f"{device_id!r} is not a button or wearable of site {self.config.site.id} (pressable: {known})")
        actions = driver(device.driver).actions
        if action not in actions:
            raise ValueError(f"{device_id!r} ({device.driver}) cannot send {action!r} (it can: {', '.join(actions)})")
        return device

    def detect(self, device_id: str, zone: str = "yard", label: str = "person") -> float:
        """A camera (Frigate's) sees `label` walk into `zone`; returns the time it was published."""
        device = self.config.device(device_id)
        detect = driver(device.driver).simulate.detect if device is not None else None
        if device is None or detect is None:
            raise ValueError(f"{device_id!r} is not a camera of site {self.config.site.id}")
        now = time.time()
        for topic, payload in detect(self, device, zone, label):
            self._send(topic, payload)
        self.pressed[device_id] = now
        return now

    def report(self, device: Device) -> None:
        """One message of the device's everyday traffic (status, telemetry, a sensor or motion state, a position)."""
        self._send(*self.routine(device))

    def routine(self, device: Device) -> tuple[str, bytes]:
        """The topic and payload of one everyday message of `device`; each gives the edge exactly one event."""
        return driver(device.driver).simulate.everyday(self, device, self._drifting_health(device))

    def _drifting_health(self, device: Device) -> Health:
        """A device's battery and radio drift slowly, as real ones do: what it reports changes now and then, not every time."""
        rng = self.rng
        battery, linkquality = self._health.setdefault(device.id, (rng.randint(40, 100), rng.randint(30, 255)))
        if rng.random() < 0.01:
            self._health[device.id] = (max(0, battery - 1), max(0, min(255, linkquality + rng.randint(-5, 5))))
        return battery, linkquality

    def publish_raw(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish anything (for bad-input tests and fuzzing)."""
        self._client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    # -- guards ----------------------------------------------------------------------------------

    def handle_messages(self) -> None:
        """React to offers and pre-alarms received so far (decisions are taken after a reaction delay)."""
        while True:
            try:
                topic, payload = self._inbox.get_nowait()
            except queue.Empty:
                return
            parts = topic.split("/")
            guard, kind = parts[-2], parts[-1]
            try:
                doc = json.loads(payload)
            except ValueError:
                continue
            if kind == "offer":
                self._offered(guard, doc)
            elif kind == "alert" and guard in self.wearable_of:
                if self.rng.random() < self._guards().cancel_prealarm:
                    self._later(self.rng.uniform(1, 4), functools.partial(self._get_up, guard))

    def _offered(self, guard: str, offer: dict) -> None:
        device = self.wearable_of.get(guard)
        if device is None:
            return
        walker = self.walkers[device]
        if offer.get("state") == "withdrawn":
            if walker.job == offer.get("escalation"):
                walker.target, walker.job, walker.on_scene = None, None, False
            return
        if walker.fallen_since is not None:
            return  # a guard on the ground answers nothing
        habits = self._guards()
        roll = self.rng.random()
        answer = "accept" if roll < habits.accept else "decline" if roll < habits.accept + habits.decline else None
        if answer is None:
            return  # ignored: the offer times out and goes to the next guard
        location = offer.get("location")

        def decide() -> None:
            self._reply(guard, answer, offer["escalation"])
            if answer == "accept":
                walker.job = offer["escalation"]
                walker.target = LatLon(location["lat"], location["lon"]) if location else self.home
                walker.on_scene = False
                walker.speed_mps = habits.walk_speed_mps
                if habits.arrive_within_s:
                    walker.speed_mps = max(walker.speed_mps, haversine_m(walker.point, walker.target) / habits.arrive_within_s)

        self._later(self.rng.uniform(*habits.react_s), decide)

    def _arrived(self, device_id: str, walker: Walker) -> None:
        habits = self._guards()
        guard = next(g for g, d in self.wearable_of.items() if d == device_id)
        job = walker.job
        walker.on_scene, walker.target = True, None
        self._reply(guard, "on_scene", job)
        for other in self.walkers.values():
            if other.fallen_since is not None and haversine_m(other.point, walker.point) <= 2 * ARRIVED_M:
                other.fallen_since = None  # helped up

        def finish() -> None:
            if walker.job == job:
                self._reply(guard, "false_alarm" if self.rng.random() < habits.false_alarm else "resolved", job)
                walker.job, walker.on_scene = None, False

        self._later(self.rng.uniform(*habits.resolve_after_s), finish)

    def _guards(self) -> GuardHabits:
        """How the guards behave; only asked on paths taken when the guards are simulated."""
        if self.habits is None:
            raise RuntimeError("the guards are not simulated (no habits given)")
        return self.habits

    def _get_up(self, guard: str) -> None:
        walker = self.walkers[self.wearable_of[guard]]
        if walker.fallen_since is not None:
            walker.fallen_since = None
            self._reply(guard, "cancel_prealarm", None)

    def _reply(self, guard: str, answer: str, escalation: str | None) -> None:
        doc = {"answer": answer} | ({"escalation": escalation} if escalation else {})
        self._in_flight.append(self._client.publish(topics.guard_reply(self.config.site.id, guard), json.dumps(doc).encode(), qos=1))

    def _later(self, delay_s: float, run: Callable[[], None]) -> None:
        heapq.heappush(self._agenda, _Action(time.monotonic() + delay_s, next(self._order), run))

    # -- the timeline ----------------------------------------------------------------------------

    def run(
        self,
        duration_s: float | None,
        *,
        press_every_s: float = 3.0,
        positions_every_s: float = 1.0,
        stop: threading.Event | None = None,
    ) -> int:
        """Walk guards, send summaries, press a random alarm every `press_every_s`; until the duration ends or `stop`."""
        stop = stop or threading.Event()
        start = time.monotonic()
        next_press = start + min(press_every_s, 1.5)  # let positions arrive before the first press
        next_positions = start
        falls = self.habits.falls_every_s if self.habits else None
        next_fall = start + self.rng.expovariate(1 / falls) if falls else math.inf
        presses = 0
        while not stop.is_set() and (duration_s is None or time.monotonic() - start < duration_s):
            now = time.monotonic()
            if self.habits is not None:
                self.handle_messages()
                while self._agenda and self._agenda[0].at <= now:
                    heapq.heappop(self._agenda).run()
            if now >= next_positions:
                self.report_positions(elapsed_s=positions_every_s)
                self.report_motion()
                next_positions += positions_every_s
            if now >= next_press and self.pressable:
                self.press(self.rng.choice(self.pressable).id)
                presses += 1
                next_press += press_every_s * self.rng.uniform(0.6, 1.4)
            if falls and now >= next_fall:
                candidates = [d for d, w in self.walkers.items() if driver(self._device(d).driver).simulate.fall and w.job is None]
                if candidates:
                    self.fall(self.rng.choice(candidates))
                next_fall = now + self.rng.expovariate(1 / falls)
            stop.wait(max(0.0, min(next_positions, next_press, 0.1 + now) - time.monotonic()))
        return presses

    def run_load(self, duration_s: float | None, rate_per_s: float, *, press_every_s: float | None = None,
                 stop: threading.Event | None = None) -> tuple[int, int]:
        """Every device's everyday traffic, `rate_per_s` messages a second in all (devices in turn), with an alarm
        press every `press_every_s` (None: none); until the duration ends or `stop`. Returns (messages, presses)."""
        stop = stop or threading.Event()
        devices = itertools.cycle(self.config.devices)
        start = time.monotonic()
        every = press_every_s if press_every_s and self.pressable else math.inf
        next_press = start + every
        sent = presses = 0
        while not stop.is_set() and (duration_s is None or time.monotonic() - start < duration_s):
            now = time.monotonic()
            due = int((now - start) * rate_per_s) + 1 - sent  # catch up in batches: the pace holds at any rate
            for _ in range(max(0, due)):
                self.report(next(devices))
                sent += 1
            if now >= next_press:
                self.press(self.rng.choice(self.pressable).id)
                presses += 1
                next_press += every
            stop.wait(max(0.0, min(start + (sent + 1) / rate_per_s, next_press) - time.monotonic()))
        return sent, presses

    # -- what the families' simulation hooks are given (device_drivers.driver.SimulatedSite) -------

    def topic(self, device: Device) -> str:
        """The topic the device publishes on."""
        return driver(device.driver).topic_for(self.config.site.id, device)

    def next_seq(self, device_id: str) -> int:
        """The device's next message sequence number, from 0."""
        self._seq[device_id] = self._seq.get(device_id, -1) + 1
        return self._seq[device_id]

    def where(self, device: Device) -> LatLon:
        """Where a worn device is (with its guard); the site's centre for any other."""
        walker = self.walkers.get(device.id)
        return walker.point if walker else self.home

    def _device(self, device_id: str) -> Device:
        device = self.config.device(device_id)
        if device is None:
            raise KeyError(f"no device {device_id!r} at site {self.config.site.id}")
        return device

    def _publish(self, device: Device, payload: bytes) -> None:
        self._send(self.topic(device), payload)

    def _send(self, topic: str, payload: bytes) -> None:
        if len(self._in_flight) >= self._prune_at:  # prune when the list has doubled: linear, however far the broker lags
            self._in_flight = [i for i in self._in_flight if not i.is_published()]
            self._prune_at = max(1000, 2 * len(self._in_flight))
        self._in_flight.append(self._client.publish(topic, payload, qos=1))
        self.sent += 1


def with_simulated_devices(config: SiteConfig, count: int, families: tuple[str, ...] | None = None) -> SiteConfig:
    """The site with devices added until it has `count`: `sim-<n>` of each family in turn (default: every registered
    one, by name), placed around the site; worn devices are not placed, their guards carry them.

    The same config and count always give the same devices, so an edge started on the written-out site knows them.
    """
    families = families or tuple(sorted(DRIVERS))
    home = config.site.location.point()
    added = []
    for n in range(max(0, count - len(config.devices))):
        family = families[n % len(families)]
        angle, radius = n * 2.399963, 20 + (n % 50) * 4  # a golden-angle spiral: spread out, reproducible
        point = _moved(home, radius * math.cos(angle), radius * math.sin(angle))
        located = {"location": {"lat": point.lat, "lon": point.lon}} if not driver(family).wearable else {}
        added.append(Device.model_validate({"id": f"sim-{n}", "driver": family, **located}))
    return config.model_copy(update={"devices": [*config.devices, *added]})


def _offset_m(origin: LatLon, point: LatLon) -> tuple[float, float]:
    """North and east offsets in metres (equirectangular: fine at site scale)."""
    north = math.radians(point.lat - origin.lat) * EARTH_RADIUS_M
    east = math.radians(point.lon - origin.lon) * EARTH_RADIUS_M * math.cos(math.radians(origin.lat))
    return north, east


def _moved(point: LatLon, north_m: float, east_m: float) -> LatLon:
    lat = point.lat + math.degrees(north_m / EARTH_RADIUS_M)
    lon = point.lon + math.degrees(east_m / (EARTH_RADIUS_M * math.cos(math.radians(point.lat))))
    return LatLon(lat, lon)
