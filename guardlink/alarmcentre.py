"""An alarm receiving centre that takes SIA DC-09 reports: where it is, who the site is to it, and the key."""

from __future__ import annotations

import os
import re
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from guardlink.yamlconfig import ID_HELP, ID_PATTERN

HEX_KEY_LENGTHS = {32: 128, 48: 192, 64: 256}  # hex digits -> AES key bits


class KeyUnavailable(ValueError):
    """An alarm centre's key cannot be read (variable unset, file unreadable, not a hex AES key)."""


class Dc09Format(StrEnum):
    """How events are written inside a DC-09 message."""

    ADM_CID = "ADM-CID"  # Ademco Contact ID: qualifier, 3-digit event code, group, zone
    SIA_DCS = "SIA-DCS"  # SIA DC-03 two-letter event codes


class Transport(StrEnum):
    TCP = "tcp"
    UDP = "udp"


class AlarmCentre(BaseModel):
    """A receiver at an alarm receiving centre (SIA DC-09 over IP). Each centre gets every alarm and restore once,
    in order, from the outbox; what it has acknowledged survives restarts.

    The AES key (hex: 32, 48 or 64 digits for AES-128/192/256) comes from `key`, `key_env` (an environment variable)
    or `key_file` (first line); it is read when the transmitter starts and never shown in logs or reprs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=ID_PATTERN, description=f"name of this receiver in logs, metrics and the outbox cursor ({ID_HELP})")
    host: str = Field(min_length=1, description="receiver's host name or address")
    port: int = Field(gt=0, lt=65536)
    protocol: Transport = Field(default=Transport.TCP, description="tcp or udp")
    format: Dc09Format = Field(default=Dc09Format.SIA_DCS, description="ADM-CID (Contact ID) or SIA-DCS")
    account: str = Field(description="the site's account number at the centre (3-16 hex digits)")
    receiver: str | None = Field(default=None, description="receiver number (Rrcvr, 1-6 hex digits); omitted when absent")
    line: str = Field(default="0", description="account prefix / line number (Lpref, 1-6 hex digits)")
    area: int = Field(default=1, ge=0, le=99, description="partition / area number reported with every event")
    key: str | None = Field(default=None, repr=False, description="AES key in hex (32, 48 or 64 digits); prefer key_env or key_file")
    key_env: str | None = Field(default=None, description="environment variable holding the hex key")
    key_file: str | None = Field(default=None, description="file whose first line is the hex key")
    zones: dict[str, int] = Field(
        default_factory=dict,
        description="device or camera id -> zone number (1-999); default: its position among the site's devices, then cameras",
    )
    supervision_s: float = Field(default=60.0, ge=0, description="a NULL supervision message when nothing was sent for this long (0 = none)")
    ack_timeout_s: float = Field(default=5.0, gt=0, le=120, description="a message not acknowledged within this is sent again")
    retry_max_s: float = Field(default=30.0, gt=0, le=3600, description="retries back off up to this")
    connect_timeout_s: float = Field(default=5.0, gt=0, le=120)

    @field_validator("account", "receiver", "line", mode="before")
    @classmethod
    def _hex_number(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, int):  # YAML reads 0123 as octal 83: the digits must be kept as written
            raise ValueError(f"write the {info.field_name} number in quotes, e.g. \"{value}\" (it is hex digits, not a number)")
        if isinstance(value, str):
            check_hex_number(value, str(info.field_name), *((3, 16) if info.field_name == "account" else (1, 6)))
        return value

    @field_validator("key")
    @classmethod
    def _hex_key(cls, key: str | None) -> str | None:
        if key is not None:
            check_key(key)
        return key

    @field_validator("zones")
    @classmethod
    def _zone_numbers(cls, zones: dict[str, int]) -> dict[str, int]:
        for device, number in zones.items():
            if not 1 <= number <= 999:
                raise ValueError(f"zone of {device!r} is {number}: zone numbers run from 1 to 999")
        return zones

    @model_validator(mode="after")
    def _one_key_source(self) -> AlarmCentre:
        given = [name for name in ("key", "key_env", "key_file") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"alarm centre {self.id!r} gives the key {len(given)} ways ({', '.join(given)}); keep one")
        return self

    @property
    def encrypted(self) -> bool:
        return self.key is not None or self.key_env is not None or self.key_file is not None

    def secret_key(self) -> bytes | None:
        """The AES key, from the site file, its environment variable or its file; KeyUnavailable saying how to provide it."""
        if self.key_env is not None:
            text = os.environ.get(self.key_env)
            if text is None:
                raise KeyUnavailable(f"alarm centre {self.id!r}: environment variable {self.key_env} (key_env) is not set; set it to the hex key")
        elif self.key_file is not None:
            try:
                lines = Path(self.key_file).expanduser().read_text().splitlines()
            except OSError as exc:
                raise KeyUnavailable(f"alarm centre {self.id!r}: cannot read key_file {self.key_file!r}: {exc.strerror}") from None
            text = lines[0] if lines else ""
        else:
            text = self.key
        if text is None:
            return None
        try:
            return check_key(text.strip())
        except ValueError as exc:
            raise KeyUnavailable(f"alarm centre {self.id!r}: {exc}") from None

    def account_for(self, site: str) -> str:
        """The account a site's events are reported under."""
        return self.account

    def __str__(self) -> str:
        return f"dc09+{self.protocol.value}://{self.host}:{self.port}#{self.account.upper()}"


class DistrictAlarmCentre(AlarmCentre):
    """A receiving centre the hub forwards the district's alarms and restores to: each site under its own account
    (`accounts`), else under `account`. Zones are numbered per site and device (`<site>/<device>`); others are zone 0."""

    accounts: dict[str, str] = Field(default_factory=dict, description="site id -> the site's account at this centre (3-16 hex digits); sites not listed report as `account`")
    zones: dict[str, int] = Field(default_factory=dict, description="`<site>/<device>` -> zone number (1-999); devices not listed are zone 0")

    @field_validator("accounts")
    @classmethod
    def _hex_accounts(cls, accounts: dict[str, str]) -> dict[str, str]:
        for site, account in accounts.items():
            try:
                check_hex_number(account, "account", 3, 16)
            except ValueError as exc:
                raise ValueError(f"site {site!r}: {exc}") from None
        return accounts

    def account_for(self, site: str) -> str:
        return self.accounts.get(site, self.account)


def check_hex_number(value: str, name: str, shortest: int, longest: int) -> None:
    """ValueError unless `value` is a DC-09 number (account, receiver, line: `name`) of `shortest` to `longest` hex digits."""
    if not re.fullmatch(f"[0-9A-Fa-f]{{{shortest},{longest}}}", value):
        raise ValueError(f"{value!r} is not {shortest}-{longest} hex digits (DC-09 {name} numbers are hex); quote it in YAML")


def check_key(text: str) -> bytes:
    """The key bytes of a hex AES key; ValueError saying what a key looks like."""
    if not re.fullmatch(r"[0-9A-Fa-f]*", text) or len(text) not in HEX_KEY_LENGTHS:
        raise ValueError(f"an AES key is 32, 48 or 64 hex digits (AES-128/192/256); this one has {len(text)} characters"
                         + ("" if re.fullmatch(r"[0-9A-Fa-f]*", text) else " and is not hex"))
    return bytes.fromhex(text)
