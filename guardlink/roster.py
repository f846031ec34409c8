"""A site's roster: the guards the district register allows to be sent there, signed by the district (Ed25519).

The hub publishes each site's roster retained on `guardlink/police/<district>/<site>/roster` (QoS 1) as a
`guardlink.roster/1` document whenever the register changes what it holds. The signature covers the canonical JSON of
every field except `signature` (as device configurations, guardlink/provisioning.py). An edge holding the district's
public key (`police.roster_key` in its site file) verifies the signature, the district and site, and that the version
is newer than the one it applied; it answers on `.../roster/applied` with a `guardlink.roster-report/1`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from guardlink.provisioning import ConfigRefused, check_signature, key_id, sign
from guardlink.yamlconfig import ID_PATTERN

ROSTER_SCHEMA: Final = "guardlink.roster/1"
REPORT_SCHEMA: Final = "guardlink.roster-report/1"
MAX_ROSTER_BYTES = 4 * 1024 * 1024  # a site of 10,000 guards is about 2 MB


class RosterRefused(ConfigRefused):
    """A roster that must not be applied; `reason`: malformed, unsigned, bad_signature, wrong_site, old_version."""


class RosterGuard(BaseModel):
    """One guard the site may send: who, what they do, what they wear, until when they may be offered jobs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=ID_PATTERN, description="the guard's id in the district register (as in the site file's guards)")
    name: str = Field(min_length=1)
    roles: list[str] = Field(description="public-security categories and site roles, e.g. patrol, first_aid, mediator")
    wearable: str | None = Field(default=None, description="device id of the guard's wearable at this site")
    company: str | None = Field(default=None, description="the security company's name")
    until: str | None = Field(default=None, description="ISO 8601 UTC: no new offers from this moment (the vetting's end); null: no end")


class Roster(BaseModel):
    """The guards of one site as the district register has them."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["guardlink.roster/1"] = Field(default=ROSTER_SCHEMA, alias="schema")
    district: str
    site: str
    version: int = Field(ge=1, description="increases with every change of the site's roster; edges refuse older versions")
    issued_at: str = Field(description="ISO 8601 UTC; kept as text so the signed bytes are exactly what travels")
    guards: list[RosterGuard]
    key_id: str = Field(description="first 16 hex digits of the SHA-256 of the district's raw public key")
    signature: str = Field(description="base64 Ed25519 signature over the canonical JSON of the other fields")

    def to_json(self) -> bytes:
        return json.dumps(self.model_dump(by_alias=True), ensure_ascii=False, separators=(",", ":")).encode()


class RosterReport(BaseModel):
    """What an edge says after a roster arrives, on `.../roster/applied` (and, last of each, in its status heartbeat)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["guardlink.roster-report/1"] = Field(default=REPORT_SCHEMA, alias="schema")
    site: str
    status: Literal["applied", "current", "refused"] = Field(description="current: that version is the one applied already")
    version: int | None = Field(default=None, description="the version applied (for refused: the one still applied, if any)")
    offered_version: int | None = Field(default=None, description="the version the refused document claimed, when readable")
    guards: int | None = Field(default=None, description="guards on the applied roster")
    reason: str | None = None
    detail: str | None = None
    at: datetime

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


def sign_roster(key: Ed25519PrivateKey, district: str, site: str, version: int, guards: list[RosterGuard], issued_at: str) -> Roster:
    """Sign a site's roster (`issued_at`: ISO 8601 UTC)."""
    unsigned: dict[str, Any] = {
        "schema": ROSTER_SCHEMA, "district": district, "site": site, "version": version, "issued_at": issued_at,
        "guards": [g.model_dump() for g in guards], "key_id": key_id(key.public_key()),
    }
    return Roster.model_validate(unsigned | {"signature": sign(key, unsigned)})


def verify_roster(payload: bytes, public_key: Ed25519PublicKey, *, district: str, site: str, applied_version: int = 0) -> Roster:
    """The roster if the district signed it for this site and it is not older than the applied one; RosterRefused otherwise.

    The same version as the applied one is returned too (a retained copy after a reconnect): the caller sees it is current."""
    if len(payload) > MAX_ROSTER_BYTES:
        raise RosterRefused("malformed", f"{len(payload)} bytes (at most {MAX_ROSTER_BYTES})")
    try:
        doc = json.loads(payload)
        roster = Roster.model_validate(doc)
    except (ValueError, ValidationError) as exc:
        raise RosterRefused("malformed", str(exc)[:200]) from None
    try:
        check_signature(doc, public_key, "the district key")
    except ConfigRefused as exc:
        raise RosterRefused(exc.reason, exc.detail) from None
    if roster.site != site or roster.district != district:
        raise RosterRefused("wrong_site", f"for {roster.district}/{roster.site}, not {district}/{site}")
    if roster.version < applied_version:
        raise RosterRefused("old_version", f"version {roster.version} is older than the applied {applied_version}")
    return roster


def offered_version(payload: bytes) -> int | None:
    """The version a (possibly refused) roster document claims, for the report; None when unreadable."""
    try:
        version = json.loads(payload).get("version")
    except (ValueError, AttributeError):
        return None
    return version if isinstance(version, int) and not isinstance(version, bool) else None
