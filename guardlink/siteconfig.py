"""Site configuration: pydantic models and a YAML loader that reports errors as file:line:col."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from guardlink.alarmcentre import AlarmCentre
from guardlink.cameraconfig import CameraSettings, camera_references
from guardlink.geo import LatLon
from guardlink.models import IncidentKind
from guardlink.yamlconfig import (
    ID_HELP,
    ID_PATTERN,
    ConfigError,
    at,
    compose,
    node_at,
    read_text,
    validation_errors,
)


class BrokerUrl(BaseModel):
    """An MQTT broker and how guardlink signs in: mqtt://[user[:password]@]host[:port] (TLS: mqtts://, port 8883),
    with TLS files and the password's source as query parameters:
    `mqtts://edge@police.example?ca=/etc/guardlink/police-ca.pem&cert=edge.crt&key=edge.key&password_file=/run/secrets/police`.

    The password comes from the URL, `password_env=NAME` (an environment variable) or `password_file=PATH`
    (first line), and is read when connecting; neither `str()` nor `repr()` shows it.
    """

    model_config = ConfigDict(frozen=True)

    host: str
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    password_env: str | None = None
    password_file: str | None = None
    ca_file: str | None = Field(default=None, description="CA certificates (PEM) the broker's certificate must chain to; default: the system's")
    cert_file: str | None = Field(default=None, description="client certificate (PEM), for brokers that require one")
    key_file: str | None = Field(default=None, description="the client certificate's private key (PEM)")

    @classmethod
    def parse(cls, url: str) -> BrokerUrl:
        """Parse `mqtt[s]://[user[:password]@]host[:port][?ca=..&cert=..&key=..&password_env=..|password_file=..]`;
        raises ValueError with what is wrong and how to write it."""
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"broker URL {_redacted(url)!r} must start with mqtt:// or mqtts:// (TLS)")
        if not parts.hostname:
            raise ValueError(f"broker URL {_redacted(url)!r} has no host; write mqtt://host:port")
        tls = parts.scheme == "mqtts"
        try:
            port = (8883 if tls else 1883) if parts.port is None else parts.port
        except ValueError:
            port = 0
        if not 0 < port < 65536:
            raise ValueError(f"broker URL {_redacted(url)!r} has an invalid port")
        options: dict[str, str] = {}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name not in _URL_OPTIONS:
                raise ValueError(f"broker URL {_redacted(url)!r}: unknown option {name!r} (known: {', '.join(_URL_OPTIONS)})")
            if not value:
                raise ValueError(f"broker URL {_redacted(url)!r}: option {name!r} needs a value")
            options[_URL_OPTIONS[name]] = value
        password = unquote(parts.password) if parts.password is not None else None
        sources = ["password"] * (password is not None) + [k for k in ("password_env", "password_file") if k in options]
        if len(sources) > 1:
            raise ValueError(f"broker URL {_redacted(url)!r} gives the password twice ({', '.join(sources)}); keep one")
        if not tls and {"ca_file", "cert_file", "key_file"} & options.keys():
            raise ValueError(f"broker URL {_redacted(url)!r}: ca, cert and key are TLS options; write mqtts://")
        if "key_file" in options and "cert_file" not in options:
            raise ValueError(f"broker URL {_redacted(url)!r}: key= without cert=; give the client certificate too")
        username = unquote(parts.username) if parts.username else None
        return cls(host=parts.hostname, port=port, tls=tls, username=username, password=password, **options)

    def secret(self) -> str | None:
        """The password, from the URL, its environment variable or its file; ValueError saying how to provide it."""
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ValueError(f"broker {self}: environment variable {self.password_env} (password_env) is not set; set it to the password")
            return value
        if self.password_file is not None:
            try:
                text = Path(self.password_file).expanduser().read_text()
            except OSError as exc:
                raise ValueError(f"broker {self}: cannot read password_file {self.password_file!r}: {exc.strerror}") from None
            return text.splitlines()[0] if text else ""
        return self.password

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


_URL_OPTIONS = {"ca": "ca_file", "cert": "cert_file", "key": "key_file", "password_env": "password_env", "password_file": "password_file"}


def _redacted(url: str) -> str:
    """A broker URL as it may be shown: any password in it replaced by ***."""
    return re.sub(r"(://[^:/@?#]*:)[^@/?#]*@", r"\1***@", url)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Position(_Model):
    """A fixed position in decimal degrees (WGS-84)."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)

    def point(self) -> LatLon:
        return LatLon(self.lat, self.lon)


class SiteInfo(_Model):
    """Who and where the site is."""

    id: str = Field(pattern=ID_PATTERN, description=f"short site id used in topics ({ID_HELP})")
    name: str = Field(min_length=1)
    district: str = Field(pattern=ID_PATTERN, description="police district the site reports to")
    location: Position
    timezone: str = Field(default="UTC", description="IANA time zone for guard schedules, e.g. Asia/Shanghai")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r} (use an IANA name such as Asia/Shanghai)") from None
        return name


class Zone(_Model):
    """A named area of the site (gate, yard, hall ...)."""

    id: str = Field(pattern=ID_PATTERN)
    name: str | None = None


class Device(_Model):
    """A device at the site and how guardlink reads it."""

    id: str = Field(pattern=ID_PATTERN)
    driver: str = Field(description="device family, e.g. zigbee2mqtt, guardlink_wearable, owntracks")
    topic: str | None = Field(default=None, description="native MQTT topic; the driver's default when omitted")
    location: Position | None = Field(default=None, description="where a fixed device is mounted")
    zone: str | None = None
    panic_actions: list[str] = Field(
        default_factory=lambda: ["single", "double", "hold", "long"],
        description="button actions that raise a panic incident",
    )
    duress_actions: list[str] = Field(default_factory=list, description="button actions that raise a silent duress alarm")
    test_actions: list[str] = Field(
        default_factory=list, description="button actions that send a test to the police (nobody is dispatched)"
    )
    channel: int | None = Field(
        default=None, ge=0, le=64, description="input of a multi-input module (Shelly input id, Tasmota ButtonN); the driver's default when omitted"
    )
    heartbeat_s: float | None = Field(
        default=None, gt=0, description="how often the device is heard from at least; the driver's default when omitted"
    )
    template: str | None = Field(default=None, description="device template (firmware_configs/templates/<model>.yaml) giving defaults")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="settings pushed to the device itself (template settings, then these)"
    )

    @field_validator("topic")
    @classmethod
    def _no_wildcards(cls, topic: str | None) -> str | None:
        if topic is not None and (not topic or any(c in topic for c in "+#\0")):
            raise ValueError(f"topic {topic!r} must be a concrete MQTT topic (no '+', '#' or empty)")
        return topic

    @model_validator(mode="after")
    def _test_is_not_an_alarm(self) -> Device:
        # A test action overrides the default panic actions; listed as an alarm by the installer too, it is ambiguous.
        alarms = set(self.duress_actions) | (set(self.panic_actions) if "panic_actions" in self.model_fields_set else set())
        if both := sorted(alarms & set(self.test_actions)):
            raise ValueError(f"device {self.id!r}: {', '.join(both)} cannot be both an alarm and a test action")
        return self


class TemplateDefaults(_Model):
    """What a device template presets for the devices that use it (a site file's own value wins)."""

    panic_actions: list[str] | None = None
    duress_actions: list[str] | None = None
    test_actions: list[str] | None = None
    heartbeat_s: float | None = Field(default=None, gt=0)


class DeviceTemplate(_Model):
    """Defaults for one device model, in firmware_configs/templates/<model>.yaml."""

    model: str = Field(pattern=ID_PATTERN, description="referred to by `template:` in site files")
    driver: str = Field(description="the device family this model speaks")
    description: str = ""
    defaults: TemplateDefaults = Field(default_factory=TemplateDefaults)
    settings: dict[str, Any] = Field(default_factory=dict, description="settings pushed to the device (debounce, report interval ...)")


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SHIFT = re.compile(r"^(?P<days>[a-z,\-]+)\s+(?P<start>\d\d):(?P<start_m>\d\d)-(?P<end>\d\d):(?P<end_m>\d\d)$")


@dataclass(frozen=True, slots=True)
class Shift:
    """Days of the week (0 = Monday) and minutes of the day; an end before the start runs past midnight."""

    days: frozenset[int]
    start_min: int
    end_min: int

    @classmethod
    def parse(cls, text: str) -> Shift:
        """Parse `mon-fri 07:00-19:00`, `sat,sun 22:00-06:00` or `daily 00:00-24:00`."""
        match = _SHIFT.match(text.strip().lower())
        if not match:
            raise ValueError(f"shift {text!r} is not like 'mon-fri 07:00-19:00'")
        days: set[int] = set()
        for part in match["days"].split(","):
            if part == "daily":
                days.update(range(7))
                continue
            first, _, last = part.partition("-")
            if first not in _DAYS or (last and last not in _DAYS):
                raise ValueError(f"shift {text!r}: days are {', '.join(_DAYS)}, ranges like mon-fri, or daily")
            a, b = _DAYS.index(first), _DAYS.index(last or first)
            days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
        start = int(match["start"]) * 60 + int(match["start_m"])
        end = int(match["end"]) * 60 + int(match["end_m"])
        if start > 24 * 60 or end > 24 * 60 or int(match["start_m"]) > 59 or int(match["end_m"]) > 59:
            raise ValueError(f"shift {text!r}: times run from 00:00 to 24:00")
        return cls(frozenset(days), start, end)

    def covers(self, weekday: int, minute: int) -> bool:
        """True if this shift is on at `minute` of day `weekday` (local time)."""
        if self.start_min <= self.end_min:
            return weekday in self.days and self.start_min <= minute < self.end_min
        # Overnight: the part after midnight belongs to the previous day's shift.
        return (weekday in self.days and minute >= self.start_min) or ((weekday - 1) % 7 in self.days and minute < self.end_min)


def _parse_each(shifts: list[str]) -> list[str]:
    for shift in shifts:
        Shift.parse(shift)  # raises ValueError saying what is wrong
    return shifts


Shifts = Annotated[list[str], AfterValidator(_parse_each)]  # shift strings, each checked


class Post(_Model):
    """Where a guard is stationed: leaving this circle while available raises a left_post incident."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    radius_m: float = Field(gt=0, le=50_000)

    def point(self) -> LatLon:
        return LatLon(self.lat, self.lon)


class Guard(_Model):
    """A registered guard."""

    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1)
    roles: list[str] = Field(default_factory=lambda: ["patrol"])
    wearable: str | None = Field(default=None, description="device id of the guard's wearable or phone")
    on_duty: bool = Field(default=True, description="false takes the guard out of dispatch whatever the schedule")
    schedule: Shifts = Field(
        default_factory=list, description="shifts in site local time, e.g. ['mon-fri 07:00-19:00']; empty = always"
    )
    post: Post | None = None

    def shifts(self) -> list[Shift]:
        return [Shift.parse(s) for s in self.schedule]


class Schedule(_Model):
    """Named shifts (site local time) that arm the camera rules naming it: nights, weekends, school holidays ..."""

    id: str = Field(pattern=ID_PATTERN)
    shifts: Shifts = Field(min_length=1, description="written as guard shifts, e.g. ['daily 22:00-06:00', 'sat,sun 00:00-24:00']")

    def armed(self, epoch_s: float, timezone: str) -> bool:
        """Whether one of its shifts is on at this instant, in the site's time zone."""
        local = datetime.fromtimestamp(epoch_s, ZoneInfo(timezone))
        return any(Shift.parse(s).covers(local.weekday(), local.hour * 60 + local.minute) for s in self.shifts)


class Camera(CameraSettings):
    """A camera at the site: the image analytics of CameraSettings, and where it is on the site."""

    location: Position | None = Field(default=None, description="where it is mounted: guards are sent here")
    zone: str | None = Field(default=None, description="site zone it watches; a camera zone's site_zone overrides it")


class IncidentNeeds(_Model):
    """What an incident type asks of dispatch."""

    guards: int = Field(default=1, ge=0, le=20, description="how many guards to send; 0 = report to the police only")
    roles: list[str] = Field(default_factory=list, description="guards must have one of these roles; empty = any role")
    exclude_reporter: bool = Field(default=True, description="never send the guard who raised it (always so for sos and man_down)")


DEFAULT_NEEDS: dict[str, IncidentNeeds] = {
    "duress": IncidentNeeds(guards=2),
    "device_offline": IncidentNeeds(guards=0),
    "low_battery": IncidentNeeds(guards=0),
    "left_post": IncidentNeeds(guards=0),
    "test": IncidentNeeds(guards=0),
    "camera_offline": IncidentNeeds(guards=0),
}


class DispatchSettings(_Model):
    """How guards are ranked and offered jobs."""

    offer_timeout_s: float = Field(default=30, gt=0, description="an unanswered offer passes to the next guard after this")
    walking_speed_mps: float = Field(default=1.4, gt=0, description="to turn distance into an ETA")
    stale_after_s: float = Field(default=60, ge=0, description="positions older than this add to the ETA")
    stale_penalty: float = Field(default=0.5, ge=0, description="seconds of ETA added per second of position age past stale_after_s")
    max_position_age_s: float = Field(default=600, gt=0, description="a guard whose position is older cannot be placed")


class WearableRules(_Model):
    """Thresholds for guard wearables."""

    heart_rate_low: float = Field(default=40, gt=0)
    heart_rate_high: float = Field(default=150, gt=0)
    freefall_g: float = Field(default=0.4, gt=0, description="acceleration below this is free fall")
    impact_g: float = Field(default=2.5, gt=0, description="acceleration above this right after a free fall is an impact")
    impact_within_s: float = Field(default=2.0, gt=0)
    tilt_deg: float = Field(default=60, gt=0, le=180, description="lying past this angle without moving is a man-down too")
    still_s: float = Field(default=10, gt=0, description="no movement this long after a fall or tilt starts the pre-alarm")
    prealarm_s: float = Field(default=15, gt=0, description="the guard can cancel from the wearable during this window")


class PoliceUplink(_Model):
    """Where escalations go."""

    broker: str = Field(description="police MQTT broker, mqtt://host:port or mqtts://host:port?ca=..&cert=..&key=..&password_file=..")
    receipts: bool = Field(
        default=True,
        description="the district command centre confirms each revision it stored; the edge resends what is not confirmed"
        " (false for a bare police broker with no command centre: the broker's acknowledgement then ends a revision's journey)",
    )
    receipt_timeout_s: float = Field(default=30.0, gt=0, le=3600, description="resend a revision not confirmed after this long (backing off to 10 min)")
    roster_key: str | None = Field(
        default=None,
        description="the district's public key (base64, district-signing.pub): the edge then takes its guards from the signed roster the"
        " command centre publishes, which wins over `guards` below once one is applied; none: the site file's guards only",
    )

    @field_validator("broker")
    @classmethod
    def _valid_url(cls, url: str) -> str:
        BrokerUrl.parse(url)
        return url

    @field_validator("roster_key")
    @classmethod
    def _valid_key(cls, key: str | None) -> str | None:
        if key is not None and len(base64.b64decode(key.strip(), validate=True)) != 32:  # binascii.Error is a ValueError
            raise ValueError("an Ed25519 public key is 32 bytes in base64: the content of district-signing.pub")
        return key


class Supervision(_Model):
    """When devices count as offline or in trouble."""

    missed_heartbeats: int = Field(default=3, ge=1, description="a device is offline after this many heartbeat intervals of silence")
    low_battery_percent: float = Field(default=15, ge=0, le=100, description="battery at or below this raises a low-battery incident")
    check_every_s: float = Field(default=1.0, gt=0, description="how often silence is checked")


class IntakeLimits(_Model):
    """How much each device may send before the edge stops reading its messages (alarms are always read)."""

    rate_per_s: float = Field(default=50.0, gt=0, le=100_000, description="messages a second per device (a wearable sends ~3, a flood thousands)")
    burst: float = Field(default=500.0, ge=1, le=1_000_000, description="messages a device may send at once above its rate")


class Telemetry(_Model):
    """History in InfluxDB (2.x, 3.x, 1.8+ or anything that takes its v2 write API); lossy, never in the alarm path.

    GUARDLINK_INFLUX_URL, GUARDLINK_INFLUX_TOKEN, GUARDLINK_INFLUX_ORG and GUARDLINK_INFLUX_BUCKET override
    the file (and GUARDLINK_INFLUX_URL alone turns telemetry on): keep the token out of the site file.
    """

    url: str = Field(description="InfluxDB base URL, e.g. http://influxdb:8086")
    token: str = Field(default="", repr=False, description="API token; InfluxDB 1.8: 'user:password'")
    org: str = Field(default="guardlink", description="organisation (InfluxDB 1.8 ignores it)")
    bucket: str = Field(default="guardlink", min_length=1, description="bucket; InfluxDB 1.8: 'database/retention-policy'")
    batch_size: int = Field(default=500, ge=1, le=50_000, description="points per write request")
    flush_interval_ms: int = Field(default=1000, ge=10, description="a partial batch is written after this long")
    buffer_points: int = Field(
        default=20_000, ge=1, description="points held while InfluxDB is slow or down; past this the oldest are dropped (counted)"
    )
    timeout_ms: int = Field(default=5000, ge=50, description="timeout of one write request")
    max_retries: int = Field(default=3, ge=0, le=10, description="retries of a failed batch before it is dropped (counted)")
    positions_every_s: float = Field(default=10, ge=0, description="at most one position per guard this often (0 = every report)")
    status_every_s: float = Field(default=10, gt=0, description="how often device health and the outbox backlog are sampled")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        return http_url(url, "telemetry URL", "http://127.0.0.1:8086")


def http_url(url: str, what: str, example: str) -> str:
    """`url` if it is http(s)://host[:port]; ValueError naming `what` it is, with an `example`, otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} {url!r} must be http(s)://host:port, e.g. {example}")
    return url


def parse_listen(text: str) -> tuple[str, int]:
    """Parse `host:port` (`[::1]:9464` for IPv6, port 0 for any free port); raises ValueError saying what is wrong."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"listen address {text!r} must be host:port, e.g. 127.0.0.1:9464")
    return host, int(port)


class Metrics(_Model):
    """The Prometheus `/metrics` endpoint of the edge node; off unless `listen` is set."""

    listen: str | None = Field(default=None, description="host:port to serve /metrics on, e.g. 127.0.0.1:9464")

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, listen: str | None) -> str | None:
        if listen is not None:
            parse_listen(listen)
        return listen


class HomeAssistant(_Model):
    """Home Assistant MQTT discovery on the site broker: HA shows guardlink's devices, incidents and guards."""

    prefix: str = Field(default="homeassistant", min_length=1, description="HA's discovery prefix")


class EvidenceUpload(_Model):
    """Evidence files (snapshots, clips) uploaded to the district command centre's hub; off when absent.

    The hub knows the edge by a `site` account's API token (`guardlink hub user add NAME --role site --site SITE`,
    then `guardlink hub user token NAME`). The token is read from `token_file` (first line), else from the
    environment variable `token_env`: it never goes in the site file nor on a command line.
    """

    url: str = Field(description="the hub's base URL, e.g. https://hub.xincheng.example:8080")
    token_file: str | None = Field(default=None, description="file whose first line is the site account's API token")
    token_env: str = Field(default="GUARDLINK_HUB_TOKEN", min_length=1, description="environment variable holding the token when there is no token_file")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        return http_url(url, "hub URL", "http://127.0.0.1:8080").rstrip("/")

    def token(self) -> str:
        """The site account's API token, read now; ValueError saying where it was looked for."""
        if self.token_file is not None:
            try:
                lines = Path(self.token_file).expanduser().read_text().splitlines()
            except OSError as exc:
                raise ValueError(f"upload: cannot read token_file {self.token_file!r}: {exc.strerror}") from None
            if lines and lines[0].strip():
                return lines[0].strip()
            raise ValueError(f"upload: token_file {self.token_file!r} is empty; put the site account's token on its first line")
        token = os.environ.get(self.token_env, "").strip()
        if not token:
            raise ValueError(f"upload: environment variable {self.token_env} is not set; set it to the site account's token, or set token_file")
        return token


class GuardApp(_Model):
    """The guard app (a phone web app the edge serves on the site network, edge/guard_app.py); off when absent."""

    listen: str = Field(default="0.0.0.0:8088", description="host:port the edge serves the app on")
    pins: dict[str, str] = Field(
        default_factory=dict, description="guard id -> the PIN (4-12 digits) that guard logs in with; a guard not listed cannot log in"
    )
    secret_file: str | None = Field(default=None, description="file whose content keys the app's login tokens; default: derived from the PINs")

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, listen: str) -> str:
        parse_listen(listen)
        return listen

    @field_validator("pins")
    @classmethod
    def _valid_pins(cls, pins: dict[str, str]) -> dict[str, str]:
        for guard, pin in pins.items():
            if not (pin.isdigit() and 4 <= len(pin) <= 12):
                raise ValueError(f"guard {guard!r}: a PIN is 4 to 12 digits")
        return pins


class SiteConfig(_Model):
    """One site: its devices, zones, guards, site broker and police uplink."""

    site: SiteInfo
    broker: str = Field(default="mqtt://127.0.0.1:1883", description="site MQTT broker, mqtt://host:port or mqtts://... as police.broker")
    police: PoliceUplink
    zones: list[Zone] = Field(default_factory=list)
    devices: list[Device] = Field(default_factory=list)
    guards: list[Guard] = Field(default_factory=list)
    cameras: list[Camera] = Field(default_factory=list)
    schedules: list[Schedule] = Field(default_factory=list, description="named shifts that arm camera rules")
    supervision: Supervision = Field(default_factory=Supervision)
    intake: IntakeLimits = Field(default_factory=IntakeLimits)
    dispatch: DispatchSettings = Field(default_factory=DispatchSettings)
    incidents: dict[str, IncidentNeeds] = Field(
        default_factory=dict, description="per incident kind (panic, sos, man_down, ...): guards, roles, exclude_reporter"
    )
    wearables: WearableRules = Field(default_factory=WearableRules)
    telemetry: Telemetry | None = Field(default=None, description="InfluxDB for history; off when absent")
    metrics: Metrics = Field(default_factory=Metrics)
    home_assistant: HomeAssistant | None = Field(default=None, description="publish Home Assistant discovery; off when absent")
    upload: EvidenceUpload | None = Field(default=None, description="upload evidence files to the command centre's hub; off when absent")
    guard_app: GuardApp | None = Field(default=None, description="serve the guard app to the guards' phones; off when absent")
    alarm_centres: list[AlarmCentre] = Field(default_factory=list, description="alarm receiving centres that get alarms and restores over SIA DC-09")
    outbox: str | None = Field(
        default=None, description="outbox database path; default $XDG_STATE_HOME/guardlink/<site>/outbox.db"
    )
    evidence_keep_mb: int = Field(
        default=2048, ge=16, description="camera snapshots and clips kept next to the outbox, at most; the oldest uploaded ones go first"
    )

    @field_validator("broker")
    @classmethod
    def _valid_url(cls, url: str) -> str:
        BrokerUrl.parse(url)
        return url

    def device(self, device_id: str) -> Device | None:
        """The device with this id, if configured."""
        return next((d for d in self.devices if d.id == device_id), None)

    def camera(self, camera_id: str) -> Camera | None:
        """The camera with this id, if configured."""
        return next((c for c in self.cameras if c.id == camera_id), None)

    def needs(self, kind: str) -> IncidentNeeds:
        """What dispatch must do for an incident kind: the site's setting, else guardlink's default."""
        needs = self.incidents.get(kind) or DEFAULT_NEEDS.get(kind) or IncidentNeeds()
        if kind in ("sos", "man_down") and not needs.exclude_reporter:
            needs = needs.model_copy(update={"exclude_reporter": True})  # the guard in trouble is never sent to help
        return needs


DEFAULT_TEMPLATES = "../templates"  # next to sites/ in firmware_configs/


def load_site(path: str | Path, known_drivers: Collection[str] | None = None, templates_dir: Path | None = None) -> SiteConfig:
    """Load and check a site file (and the device templates it uses); ConfigError lists every problem as file:line:col."""
    path = Path(path)
    text = read_text(path, "site file")
    directory = templates_dir or (path.parent / DEFAULT_TEMPLATES).resolve()
    templates = load_templates(directory) if directory.is_dir() else {}
    looked_in = f"{directory}" + ("" if directory.is_dir() else f", which does not exist: templates are read from {DEFAULT_TEMPLATES} "
                                  "next to the site file's directory; copy firmware_configs/templates there")
    return parse_site(text, str(path), known_drivers, templates, templates_from=looked_in)


def parse_site(
    text: str, filename: str, known_drivers: Collection[str] | None = None, templates: dict[str, DeviceTemplate] | None = None,
    *, templates_from: str | None = None,
) -> SiteConfig:
    """Parse site YAML text; `filename` is used in error messages, `templates_from` says where templates were looked for.
    Reports every problem found, not just the first."""
    root, data, errors = compose(
        text, filename, "a site needs at least 'site' and 'police'", "a site file is a mapping with 'site', 'police', 'devices', 'guards'"
    )
    unresolved = _apply_templates(data, root, filename, templates or {}, errors, templates_from)
    errors += [f"{at(filename, node_at(root, loc)[0])}: {msg}" for loc, msg in _cross_references(data, known_drivers)]
    try:
        config = SiteConfig.model_validate(data)
    except ValidationError as exc:
        # A device whose template is unknown lacks what the template would have given: say so once, not per field.
        skip = {("devices", i, "driver") for i in unresolved}
        raise ConfigError(validation_errors(exc, root, filename, skip) + errors) from None
    if errors:
        raise ConfigError(errors)
    return config


def load_templates(directory: Path) -> dict[str, DeviceTemplate]:
    """Every `*.yaml` device template in a directory, by model; ConfigError (file:line:col) for a bad one."""
    templates: dict[str, DeviceTemplate] = {}
    errors: list[str] = []
    for path in sorted(directory.glob("*.yaml")):
        root, data, problems = compose(
            read_text(path, "device template"), str(path), "a template needs 'model' and 'driver'", "a device template is a mapping with 'model', 'driver', 'defaults', 'settings'"
        )
        try:
            template = DeviceTemplate.model_validate(data)
        except ValidationError as exc:
            errors += validation_errors(exc, root, str(path)) + problems
            continue
        errors += problems
        if template.model in templates:
            errors.append(f"{at(str(path), node_at(root, ('model',))[0])}: model {template.model!r} is also defined by another template")
        templates[template.model] = template
    if errors:
        raise ConfigError(errors)
    return templates


def _apply_templates(
    data: dict[str, Any], root: yaml.Node, filename: str, templates: dict[str, DeviceTemplate], errors: list[str],
    templates_from: str | None = None,
) -> set[int]:
    """Fill each device's unset fields from its template, in place; adds errors for unknown or mismatched templates
    and returns the indices of devices whose template is unknown."""
    unresolved: set[int] = set()
    devices = data.get("devices")
    for i, device in enumerate(devices if isinstance(devices, list) else []):
        if not isinstance(device, dict) or "template" not in device:
            continue
        name = device["template"]
        template = templates.get(name) if isinstance(name, str) else None
        where = at(filename, node_at(root, ("devices", i, "template"))[0])
        if template is None:
            errors.append(f"{where}: device {device.get('id')!r} uses unknown template {name!r} (known: {', '.join(sorted(templates)) or 'none'}"
                          f"{'; looked in ' + templates_from if templates_from else ''})")
            unresolved.add(i)
            continue
        driver = device.setdefault("driver", template.driver)
        if driver != template.driver:
            errors.append(f"{where}: device {device.get('id')!r} uses driver {driver!r}, but template {name!r} is for {template.driver!r}")
        for key, value in template.defaults.model_dump(exclude_unset=True).items():
            device.setdefault(key, value)
        settings = device.get("settings")
        device["settings"] = {**template.settings, **(settings if isinstance(settings, dict) else {})}
    return unresolved


def _cross_references(data: dict[str, Any], known_drivers: Collection[str] | None) -> Iterator[tuple[tuple, str]]:
    """Checks that span several entries (unique ids, references that must resolve), on the raw data so they run
    even when some entries are otherwise invalid."""

    def entries(key: str) -> list[tuple[int, dict[str, Any]]]:
        value = data.get(key)
        return [(i, e) for i, e in enumerate(value) if isinstance(e, dict)] if isinstance(value, list) else []

    def text(entry: dict[str, Any], key: str) -> str | None:
        value = entry.get(key)
        return value if isinstance(value, str) else None

    zones = [z for _, e in entries("zones") if (z := text(e, "id"))]
    device_ids = {d for _, e in entries("devices") if (d := text(e, "id"))}
    for kind in ("zone", "device", "guard", "camera", "schedule", "alarm_centre"):
        seen: set[str | None] = set()
        for i, entry in entries(f"{kind}s"):
            if (ident := text(entry, "id")) in seen:
                yield (f"{kind}s", i, "id"), f"duplicate {kind} id {ident!r}"
            seen.add(ident)
    topics: dict[tuple[str, object], str | None] = {}  # inputs of one module share its topic
    for i, device in entries("devices"):
        ident, driver, zone, topic = text(device, "id"), text(device, "driver"), text(device, "zone"), text(device, "topic")
        if known_drivers is not None and driver is not None and driver not in known_drivers:
            yield ("devices", i, "driver"), f"device {ident!r} uses unknown driver {driver!r} (known: {', '.join(sorted(known_drivers))})"
        if zone is not None and zone not in zones:
            yield ("devices", i, "zone"), f"device {ident!r} refers to zone {zone!r}, which is not defined (defined: {', '.join(zones) or 'none'})"
        if topic is not None:
            key = (topic, device.get("channel"))
            if key in topics:
                yield ("devices", i, "topic"), f"device {ident!r} uses topic {topic!r} of device {topics[key]!r}"
            topics[key] = ident
    schedules = [s for _, e in entries("schedules") if (s := text(e, "id"))]
    for i, camera in entries("cameras"):
        ident, zone = text(camera, "id"), text(camera, "zone")
        if ident in device_ids:
            yield ("cameras", i, "id"), f"camera {ident!r} has the id of a device; incidents name either, so they must differ"
        if zone is not None and zone not in zones:
            yield ("cameras", i, "zone"), f"camera {ident!r} refers to zone {zone!r}, which is not defined (defined: {', '.join(zones) or 'none'})"
        if not text(camera, "source"):
            yield ("cameras", i), f"camera {ident!r} has no source (rtsp://..., http://... MJPEG, mqtt:<topic> or a video file)"
        yield from ((("cameras", i, *loc), message) for loc, message in camera_references(camera, zones, schedules))
    cameras = {c for _, e in entries("cameras") if (c := text(e, "id"))}
    for i, centre in entries("alarm_centres"):
        zones_of = centre.get("zones")
        for name in zones_of if isinstance(zones_of, dict) else ():
            if name not in device_ids | cameras:
                yield ("alarm_centres", i, "zones", name), f"alarm centre {text(centre, 'id')!r} numbers {name!r}, which is neither a device nor a camera"
    incidents = data.get("incidents")
    for kind in incidents if isinstance(incidents, dict) else ():
        if kind not in IncidentKind.__members__.values():
            yield ("incidents", kind), f"unknown incident kind {kind!r} (known: {', '.join(k.value for k in IncidentKind)})"
    wearers: dict[str, str | None] = {}
    for i, guard in entries("guards"):
        ident, wearable = text(guard, "id"), text(guard, "wearable")
        if wearable is None:
            continue
        if wearable not in device_ids:
            yield ("guards", i, "wearable"), f"guard {ident!r} wears {wearable!r}, which is not among the devices"
        elif wearable in wearers:
            yield ("guards", i, "wearable"), f"guard {ident!r} wears {wearable!r}, already worn by {wearers[wearable]!r}"
        wearers[wearable] = ident
