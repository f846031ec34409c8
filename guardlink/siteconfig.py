"""Site configuration: pydantic models and a YAML loader that reports errors as file:line:col."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from guardlink.geo import LatLon

_ID = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_ID_HELP = "lowercase letters, digits, '-' and '_', starting with a letter or digit"


class ConfigError(Exception):
    """A configuration file is invalid; each message reads `file:line:col: message`."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


class BrokerUrl(BaseModel):
    """An MQTT broker address, written mqtt://[user:password@]host[:port]."""

    model_config = ConfigDict(frozen=True)

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerUrl:
        """Parse `mqtt://host:port`; raises ValueError with what is wrong."""
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        if parts.scheme != "mqtt":
            raise ValueError(f"broker URL {url!r} must start with mqtt:// (mqtts is not supported yet)")
        if not parts.hostname:
            raise ValueError(f"broker URL {url!r} has no host; write mqtt://host:port")
        try:
            port = 1883 if parts.port is None else parts.port
        except ValueError:
            port = 0
        if not 0 < port < 65536:
            raise ValueError(f"broker URL {url!r} has an invalid port")
        return cls(host=parts.hostname, port=port, username=parts.username, password=parts.password)

    def __str__(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


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

    id: str = Field(pattern=_ID, description=f"short site id used in topics ({_ID_HELP})")
    name: str = Field(min_length=1)
    district: str = Field(pattern=_ID, description="police district the site reports to")
    location: Position


class Zone(_Model):
    """A named area of the site (gate, yard, hall ...)."""

    id: str = Field(pattern=_ID)
    name: str | None = None


class Device(_Model):
    """A device at the site and how guardlink reads it."""

    id: str = Field(pattern=_ID)
    driver: str = Field(description="device family, e.g. zigbee2mqtt, guardlink_wearable, owntracks")
    topic: str | None = Field(default=None, description="native MQTT topic; the driver's default when omitted")
    location: Position | None = Field(default=None, description="where a fixed device is mounted")
    zone: str | None = None
    panic_actions: list[str] = Field(
        default_factory=lambda: ["single", "double", "hold", "long"],
        description="button actions that raise a panic incident",
    )
    duress_actions: list[str] = Field(default_factory=list, description="button actions that raise a silent duress alarm")
    heartbeat_s: float | None = Field(
        default=None, gt=0, description="how often the device is heard from at least; the driver's default when omitted"
    )

    @field_validator("topic")
    @classmethod
    def _no_wildcards(cls, topic: str | None) -> str | None:
        if topic is not None and (not topic or any(c in topic for c in "+#\0")):
            raise ValueError(f"topic {topic!r} must be a concrete MQTT topic (no '+', '#' or empty)")
        return topic


class Guard(_Model):
    """A registered guard."""

    id: str = Field(pattern=_ID)
    name: str = Field(min_length=1)
    roles: list[str] = Field(default_factory=lambda: ["patrol"])
    wearable: str | None = Field(default=None, description="device id of the guard's wearable or phone")
    on_duty: bool = True


class PoliceUplink(_Model):
    """Where escalations go."""

    broker: str = Field(description="police MQTT broker, mqtt://host:port")

    @field_validator("broker")
    @classmethod
    def _valid_url(cls, url: str) -> str:
        BrokerUrl.parse(url)
        return url


class Supervision(_Model):
    """When devices count as offline or in trouble."""

    missed_heartbeats: int = Field(default=3, ge=1, description="a device is offline after this many heartbeat intervals of silence")
    low_battery_percent: float = Field(default=15, ge=0, le=100, description="battery at or below this raises a low-battery incident")
    check_every_s: float = Field(default=1.0, gt=0, description="how often silence is checked")


class SiteConfig(_Model):
    """One site: its devices, zones, guards, site broker and police uplink."""

    site: SiteInfo
    broker: str = Field(default="mqtt://127.0.0.1:1883", description="site MQTT broker, mqtt://host:port")
    police: PoliceUplink
    zones: list[Zone] = Field(default_factory=list)
    devices: list[Device] = Field(default_factory=list)
    guards: list[Guard] = Field(default_factory=list)
    supervision: Supervision = Field(default_factory=Supervision)
    outbox: str | None = Field(
        default=None, description="outbox database path; default $XDG_STATE_HOME/guardlink/<site>/outbox.db"
    )

    @field_validator("broker")
    @classmethod
    def _valid_url(cls, url: str) -> str:
        BrokerUrl.parse(url)
        return url

    def device(self, device_id: str) -> Device | None:
        """The device with this id, if configured."""
        return next((d for d in self.devices if d.id == device_id), None)


def load_site(path: str | Path, known_drivers: Collection[str] | None = None) -> SiteConfig:
    """Load and check a site file; raises ConfigError listing every problem as file:line:col."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read site file: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raw = exc.object[: exc.start]
        line, col = raw.count(b"\n") + 1, exc.start - (raw.rfind(b"\n") + 1) + 1
        raise ConfigError([f"{path}:{line}:{col}: the site file is not UTF-8 text (byte {exc.object[exc.start]:#04x})"]) from None
    return parse_site(text, str(path), known_drivers)


def parse_site(text: str, filename: str, known_drivers: Collection[str] | None = None) -> SiteConfig:
    """Parse site YAML text; `filename` is used in error messages."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
        raise ConfigError([f"{where}: invalid YAML: {exc.problem or exc}"]) from None
    except yaml.reader.ReaderError as exc:  # a control character: carries a position, not a mark
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise ConfigError([f"{filename}:{line}:{col}: invalid YAML: control character U+{exc.character:04X} is not allowed"]) from None
    if root is None:
        raise ConfigError([f"{filename}:1:1: the file is empty; a site needs at least 'site' and 'police'"])
    errors = [f"{_at(filename, node)}: duplicate key {key!r}" for key, node in _duplicate_keys(root)]
    data = yaml.SafeLoader(text).get_single_data()
    if not isinstance(data, dict):
        raise ConfigError([f"{_at(filename, root)}: a site file is a mapping with 'site', 'police', 'devices', 'guards'"])
    try:
        config = SiteConfig.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            node, loc = _node_at(root, err["loc"])
            if err["type"] == "extra_forbidden":  # point at the misspelt key, not at its value
                node = _key_node(_node_at(root, err["loc"][:-1])[0], err["loc"][-1]) or node
            field = ".".join(str(p) for p in loc) or "(top level)"
            errors.append(f"{_at(filename, node)}: {field}: {_explain(err)}")
        raise ConfigError(errors) from None
    errors += [f"{_at(filename, _node_at(root, loc)[0])}: {msg}" for loc, msg in _cross_references(config, known_drivers)]
    if errors:
        raise ConfigError(errors)
    return config


def _cross_references(config: SiteConfig, known_drivers: Collection[str] | None) -> Iterator[tuple[tuple, str]]:
    """Checks that span several entries: unique ids, references that must resolve."""
    zones = [z.id for z in config.zones]
    devices = {d.id: d for d in config.devices}
    for kind, items in (("zone", config.zones), ("device", config.devices), ("guard", config.guards)):
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.id in seen:
                yield (f"{kind}s", i, "id"), f"duplicate {kind} id {item.id!r}"
            seen.add(item.id)
    topics: dict[str, str] = {}
    for i, device in enumerate(config.devices):
        if known_drivers is not None and device.driver not in known_drivers:
            yield ("devices", i, "driver"), (
                f"device {device.id!r} uses unknown driver {device.driver!r} (known: {', '.join(sorted(known_drivers))})"
            )
        if device.zone is not None and device.zone not in zones:
            yield ("devices", i, "zone"), (
                f"device {device.id!r} refers to zone {device.zone!r}, which is not defined (defined: {', '.join(zones) or 'none'})"
            )
        if device.topic is not None:
            if device.topic in topics:
                yield ("devices", i, "topic"), f"device {device.id!r} uses topic {device.topic!r} of device {topics[device.topic]!r}"
            topics[device.topic] = device.id
    wearers: dict[str, str] = {}
    for i, guard in enumerate(config.guards):
        if guard.wearable is None:
            continue
        if guard.wearable not in devices:
            yield ("guards", i, "wearable"), (
                f"guard {guard.id!r} wears {guard.wearable!r}, which is not among the devices"
            )
        elif guard.wearable in wearers:
            yield ("guards", i, "wearable"), f"guard {guard.id!r} wears {guard.wearable!r}, already worn by {wearers[guard.wearable]!r}"
        wearers[guard.wearable] = guard.id


def _explain(err: dict[str, Any]) -> str:
    if err["type"] == "string_pattern_mismatch":
        return f"{err['input']!r} is not a valid id ({_ID_HELP})"
    if err["type"] == "extra_forbidden":
        return "unknown key (check the spelling)"
    if err["type"] == "missing":
        return "required but missing"
    msg = err["msg"]
    return msg.removeprefix("Value error, ")


def _at(filename: str, node: yaml.Node) -> str:
    return f"{filename}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"


def _node_at(root: yaml.Node, loc: tuple) -> tuple[yaml.Node, tuple]:
    """The deepest YAML node along a pydantic error location (and the path that reached it)."""
    node, reached = root, []
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    child = value
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            if isinstance(node, yaml.MappingNode) and isinstance(part, str):
                reached.append(part)  # a missing key: point at the mapping that lacks it
                continue
            break
        node = child
        reached.append(part)
    return node, tuple(reached) if reached else tuple(loc)


def _key_node(mapping: yaml.Node, name: object) -> yaml.Node | None:
    if isinstance(mapping, yaml.MappingNode):
        return next((key for key, _ in mapping.value if key.value == str(name)), None)
    return None


def _duplicate_keys(node: yaml.Node) -> Iterator[tuple[str, yaml.Node]]:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    yield key.value, key
                seen.add(key.value)
            yield from _duplicate_keys(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _duplicate_keys(item)


