"""District configuration for the command centre (the hub): its broker, database, communities and sites; errors as file:line:col."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from guardlink.alarmcentre import DistrictAlarmCentre
from guardlink.siteconfig import BrokerUrl, Shifts, SiteInfo, parse_listen
from guardlink.yamlconfig import ID_HELP, ID_PATTERN, ConfigError, at, compose, node_at, read_text, validation_errors


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DistrictInfo(_Model):
    """Which police district this command centre serves."""

    id: str = Field(pattern=ID_PATTERN, description=f"district id, as in each site file's site.district ({ID_HELP})")
    name: str = Field(min_length=1)
    timezone: str = Field(default="UTC", description="IANA time zone for reports and the console, e.g. Asia/Shanghai")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        return SiteInfo._known_zone(name)  # the same check as a site's time zone


Point = tuple[float, float]


class Community(_Model):
    """A community (police station area) with its chief and the sites inside it."""

    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1)
    chief: str = Field(min_length=1, description="the community police chief's name")
    outline: list[Point] = Field(min_length=3, description="the area's polygon as [[lat, lon], ...] (WGS-84), at least 3 corners")
    sites: list[str] = Field(default_factory=list, description="ids of the sites in this community")

    @field_validator("outline")
    @classmethod
    def _in_range(cls, outline: list[Point]) -> list[Point]:
        for lat, lon in outline:
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ValueError(f"corner [{lat}, {lon}] is not a WGS-84 [lat, lon] (lat -90..90, lon -180..180)")
        return outline


class HubSettings(_Model):
    """How the hub judges liveness and batches its work."""

    heartbeat_misses: int = Field(default=3, ge=1, le=100, description="a site is offline after this many missed status heartbeats")
    receipt_batch: int = Field(default=500, ge=1, le=1000, description="at most this many revisions in one receipt message")
    commit_batch: int = Field(default=1000, ge=1, le=10000, description="at most this many messages committed in one transaction")
    evidence_max_mb: float = Field(default=200, gt=0, le=10_000, description="largest evidence file (snapshot, clip) a site may upload")


class ConsoleSettings(_Model):
    """What the web console warns about and draws."""

    ack_within_s: float = Field(default=60, gt=0, le=3600, description="an incident nobody acknowledged this long after it was detected turns red")
    tiles: str | None = Field(
        default=None, description="map tile URL template such as https://tiles.example/{z}/{x}/{y}.png; none: the map draws only outlines (works offline)"
    )
    tile_attribution: str = Field(default="", max_length=300, description="credit shown on the map for the tiles")


class RegisterSettings(_Model):
    """The district register of guards: who may be sent (hub/register.py), and how rosters reach the sites."""

    training_hours_min: float = Field(default=16, ge=0, le=2000, description="periodic training a guard needs in the last 12 months to be sent")
    expiring_within_days: int = Field(default=30, ge=1, le=365, description="vetting ending within this many days is listed as expiring soon")
    id_key_file: str | None = Field(
        default=None, description="file holding the secret key of the ID-number hash (HMAC-SHA256); else the GUARDLINK_ID_KEY environment variable. Never in the repository"
    )
    signing_key: str | None = Field(
        default=None, description="the district's Ed25519 private key (PEM, mode 600) signing site rosters; none: rosters are not published"
    )
    roster_debounce_s: float = Field(default=0.1, ge=0, le=60, description="rosters go out this long after the last register change of a burst")
    roster_every_s: float = Field(default=300, gt=0, le=86400, description="rosters are re-derived this often even without changes (vetting ends with time)")


class HotspotSettings(_Model):
    """How the command centre maps where incidents cluster (hub/hotspots/)."""

    cell_m: float = Field(default=150, ge=25, le=5000, description="side of a hotspot grid cell, in metres")


class PatrolPoint(_Model):
    """A grid patrol point, anchored on a police office or workstation: a check-in counts inside its radius."""

    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1)
    anchor: Literal["police_office", "workstation", "other"] = Field(default="workstation", description="what the point is anchored on")
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    radius_m: float = Field(default=50, gt=0, le=5000, description="a guard inside this circle for `patrol.dwell_s` has checked in")
    qr: str | None = Field(default=None, min_length=8, max_length=100, description="the secret printed in the checkpoint's QR code (GLCP:<id>:<qr>); none: no QR check-in")
    community: str | None = Field(default=None, description="the community whose chief hears of late or missed check-ins")


class PatrolRoute(_Model):
    """Points to visit in each of the route's time windows (district local time)."""

    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1)
    points: list[str] = Field(min_length=1, description="ids of patrol points")
    windows: Shifts = Field(min_length=1, description="when, as guard shifts: ['daily 20:00-22:00']")


class PatrolSettings(_Model):
    """Patrol points, routes and how check-ins are judged (hub/checkins.py)."""

    dwell_s: float = Field(default=60, ge=0, le=3600, description="a guard's reported position inside a point's radius this long is a check-in")
    late_s: float = Field(default=600, ge=0, le=86400, description="a check-in this long after a window ended is late; none by then is missed")
    check_every_s: float = Field(default=5, gt=0, le=600, description="how often positions and windows are looked at")
    points: list[PatrolPoint] = Field(default_factory=list)
    routes: list[PatrolRoute] = Field(default_factory=list)

    def point(self, point_id: str) -> PatrolPoint | None:
        return next((p for p in self.points if p.id == point_id), None)


class DistrictConfig(_Model):
    """A district command centre: who it is, where its broker and database are, its communities and their sites."""

    district: DistrictInfo
    broker: str = Field(default="mqtt://127.0.0.1:1883", description="the district (police) broker, mqtt://[user:password@]host:port")
    database: str | None = Field(
        default=None, description="SQLAlchemy URL: sqlite:///path or postgresql://user@host:port/db; default $XDG_STATE_HOME/guardlink/hub-<district>.db"
    )
    listen: str = Field(default="127.0.0.1:8080", description="host:port of the hub's HTTP API and console")
    evidence_dir: str | None = Field(
        default=None,
        description="directory of the evidence files sites upload; default: <database name>-evidence next to an SQLite database, else $XDG_STATE_HOME/guardlink/hub-<district>-evidence",
    )
    communities: list[Community] = Field(default_factory=list)
    settings: HubSettings = Field(default_factory=HubSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    hotspots: HotspotSettings = Field(default_factory=HotspotSettings)
    patrol: PatrolSettings = Field(default_factory=PatrolSettings)
    registry: RegisterSettings = Field(default_factory=RegisterSettings)
    alarm_centres: list[DistrictAlarmCentre] = Field(
        default_factory=list, description="alarm receiving centres the hub forwards the district's alarms and restores to over SIA DC-09"
    )

    @field_validator("broker")
    @classmethod
    def _valid_broker(cls, url: str) -> str:
        BrokerUrl.parse(url)
        return url

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, listen: str) -> str:
        parse_listen(listen)
        return listen

    def broker_url(self) -> BrokerUrl:
        return BrokerUrl.parse(self.broker)

    def database_url(self) -> str:
        """The configured database, else an SQLite file in the user's state directory."""
        if self.database:
            return self.database
        return f"sqlite:///{_state_directory() / f'hub-{self.district.id}.db'}"

    def evidence_path(self, sqlite_file: str | None) -> Path:
        """Where uploaded evidence is kept: `evidence_dir`, else next to the SQLite database file, else the state directory."""
        if self.evidence_dir:
            return Path(self.evidence_dir).expanduser()
        if sqlite_file and sqlite_file != ":memory:":
            return Path(sqlite_file).with_name(f"{Path(sqlite_file).stem}-evidence")
        return _state_directory() / f"hub-{self.district.id}-evidence"

    def community_of(self, site: str) -> str | None:
        """The id of the community a site belongs to (None for a site the file does not place)."""
        return next((c.id for c in self.communities if site in c.sites), None)

    def sites(self) -> list[str]:
        """Every site id the file places, in file order."""
        return [site for community in self.communities for site in community.sites]


def _state_directory() -> Path:
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "guardlink"
    state.mkdir(parents=True, exist_ok=True)
    return state


def load_district(path: str | Path) -> DistrictConfig:
    """Load and check a district file; ConfigError lists every problem as file:line:col."""
    path = Path(path)
    return parse_district(read_text(path, "district file"), str(path))


def parse_district(text: str, filename: str) -> DistrictConfig:
    """Parse district YAML text; `filename` is used in error messages. Reports every problem found."""
    root, data, errors = compose(
        text, filename, "a district needs at least 'district'", "a district file is a mapping with 'district', 'broker', 'communities'"
    )
    errors += [f"{at(filename, node_at(root, loc)[0])}: {msg}" for loc, msg in _cross_references(data)]
    try:
        config = DistrictConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_errors(exc, root, filename) + errors) from None
    if errors:
        raise ConfigError(errors)
    return config


def _cross_references(data: dict[str, Any]) -> Iterator[tuple[tuple, str]]:
    yield from _alarm_centre_references(data)
    yield from _patrol_references(data)
    communities = data.get("communities")
    if not isinstance(communities, list):
        return
    community_ids: dict[str, int] = {}
    placed: dict[str, str] = {}
    for i, community in enumerate(communities):
        if not isinstance(community, dict):
            continue
        cid = community.get("id")
        if isinstance(cid, str):
            if cid in community_ids:
                yield ("communities", i, "id"), f"community {cid!r} is defined twice (first as communities[{community_ids[cid]}])"
            community_ids.setdefault(cid, i)
        sites = community.get("sites")
        for j, site in enumerate(sites if isinstance(sites, list) else []):
            if not isinstance(site, str):
                continue
            if site in placed:
                yield ("communities", i, "sites", j), f"site {site!r} is already in community {placed[site]!r}; a site belongs to one community"
            else:
                placed[site] = str(cid)


def _alarm_centre_references(data: dict[str, Any]) -> Iterator[tuple[tuple, str]]:
    """Centre ids are unique; the sites a centre gives accounts or zones are placed in a community (when the file places any)."""
    centres, communities = data.get("alarm_centres"), data.get("communities")
    placed = {site for c in communities if isinstance(c, dict) for site in (c.get("sites") or []) if isinstance(site, str)} if isinstance(communities, list) else set()
    seen: set[object] = set()
    for i, centre in enumerate(centres if isinstance(centres, list) else []):
        if not isinstance(centre, dict):
            continue
        if (ident := centre.get("id")) in seen:
            yield ("alarm_centres", i, "id"), f"duplicate alarm centre id {ident!r}"
        seen.add(ident)
        accounts, zones = centre.get("accounts"), centre.get("zones")
        for site in accounts if isinstance(accounts, dict) and placed else ():
            if site not in placed:
                yield ("alarm_centres", i, "accounts", site), f"alarm centre {ident!r} gives an account to site {site!r}, which no community has"
        for key in zones if isinstance(zones, dict) else ():
            site, slash, device = str(key).partition("/")
            if not slash or not site or not device:
                yield ("alarm_centres", i, "zones", key), f"alarm centre {ident!r} numbers {key!r}: at a district, zones are numbered as <site>/<device>"
            elif placed and site not in placed:
                yield ("alarm_centres", i, "zones", key), f"alarm centre {ident!r} numbers a device of site {site!r}, which no community has"


def _list(value: object) -> list[Any]:
    """A YAML list as read, or [] for anything else (its own validation reports that)."""
    return value if isinstance(value, list) else []


def _patrol_references(data: dict[str, Any]) -> Iterator[tuple[tuple, str]]:
    """Point and route ids are unique; routes name defined points; a point's community is defined."""
    patrol = data.get("patrol")
    if not isinstance(patrol, dict):
        return
    communities = data.get("communities")
    known_communities = {c.get("id") for c in communities if isinstance(c, dict)} if isinstance(communities, list) else set()
    points = _list(patrol.get("points"))
    point_ids: set[object] = set()
    for i, point in enumerate(points):
        if not isinstance(point, dict):
            continue
        if point.get("id") in point_ids:
            yield ("patrol", "points", i, "id"), f"patrol point {point.get('id')!r} is defined twice"
        point_ids.add(point.get("id"))
        if point.get("community") is not None and point.get("community") not in known_communities:
            yield ("patrol", "points", i, "community"), f"patrol point {point.get('id')!r} names community {point.get('community')!r}, which is not defined"
    routes = _list(patrol.get("routes"))
    route_ids: set[object] = set()
    for i, route in enumerate(routes):
        if not isinstance(route, dict):
            continue
        if route.get("id") in route_ids:
            yield ("patrol", "routes", i, "id"), f"patrol route {route.get('id')!r} is defined twice"
        route_ids.add(route.get("id"))
        for j, point_id in enumerate(_list(route.get("points"))):
            if point_id not in point_ids:
                known = ", ".join(str(p) for p in point_ids) or "none"
                yield ("patrol", "routes", i, "points", j), f"route {route.get('id')!r} refers to patrol point {point_id!r}, which is not defined (defined: {known})"
