"""Signed device configuration: the document installers push and devices verify (Ed25519).

A device's effective configuration is published retained on `guardlink/<site>/devices/<device>/config`
as a `guardlink.device-config/1` document. The signature covers the canonical JSON (sorted keys, no
spaces, UTF-8) of every field except `signature`. A device holding the site's public key verifies the
signature, the site and its own id, and that the version is newer than the one it applied; it then
applies the configuration and reports on `.../config/applied`. Which device families do (their firmware
verifies pushes) their driver entries say (`Driver.verifies_configs` in device_drivers/).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from guardlink.siteconfig import Device

CONFIG_SCHEMA: Final = "guardlink.device-config/1"
PRIVATE_KEY_FILE = "site-signing.key"
PUBLIC_KEY_FILE = "site-signing.pub"


class ConfigRefused(ValueError):
    """A pushed configuration must not be applied; `reason` is a short code for the report."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class SignedConfig(BaseModel):
    """A device's configuration as pushed by the installer."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["guardlink.device-config/1"] = Field(default=CONFIG_SCHEMA, alias="schema")
    site: str
    device: str
    version: int = Field(ge=1, description="increases with every change; devices refuse older versions")
    issued_at: str = Field(description="ISO 8601 UTC; kept as text so the signed bytes are exactly what travels")
    config: dict[str, Any]
    key_id: str = Field(description="first 16 hex digits of the SHA-256 of the raw public key")
    signature: str = Field(description="base64 Ed25519 signature over the canonical JSON of the other fields")

    def to_json(self) -> bytes:
        return json.dumps(self.model_dump(by_alias=True), ensure_ascii=False).encode()


class ConfigReport(BaseModel):
    """What a device says after a push, on `.../config/applied`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Literal["applied", "refused"]
    version: int | None = None
    reason: str | None = None


def effective_config(device: Device) -> dict[str, Any]:
    """What a device is told: its family and every setting the site file (with its template) gives it."""
    return device.model_dump(mode="json", exclude={"id", "topic", "location", "zone", "template"}, exclude_none=True)


def canonical(doc: dict[str, Any]) -> bytes:
    """The bytes a signature covers."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign_config(key: Ed25519PrivateKey, site: str, device: str, version: int, config: dict[str, Any], issued_at: str) -> SignedConfig:
    """Sign a device's configuration (`issued_at`: ISO 8601 UTC)."""
    unsigned = {
        "schema": CONFIG_SCHEMA, "site": site, "device": device, "version": version,
        "issued_at": issued_at, "config": config, "key_id": key_id(key.public_key()),
    }
    return SignedConfig.model_validate(unsigned | {"signature": sign(key, unsigned)})


def sign(key: Ed25519PrivateKey, unsigned: dict[str, Any]) -> str:
    """The base64 Ed25519 signature over a document's canonical JSON (every signed guardlink document: configs, rosters)."""
    return base64.b64encode(key.sign(canonical(unsigned))).decode()


def check_signature(doc: dict[str, Any], public_key: Ed25519PublicKey, signer: str = "the site key") -> None:
    """ConfigRefused unless `doc["signature"]` is `public_key`'s signature over the canonical JSON of the other fields."""
    if not isinstance(doc.get("signature"), str) or not doc["signature"]:
        raise ConfigRefused("unsigned", "the document carries no signature")
    unsigned = {k: v for k, v in doc.items() if k != "signature"}
    try:
        public_key.verify(base64.b64decode(doc["signature"], validate=True), canonical(unsigned))
    except (InvalidSignature, ValueError):
        raise ConfigRefused("bad_signature", f"not signed by {signer} {key_id(public_key)}") from None


def verify_config(payload: bytes, public_key: Ed25519PublicKey, *, site: str, device: str, applied_version: int = 0) -> SignedConfig:
    """The configuration if it is for this device, signed by the site key and newer; ConfigRefused otherwise."""
    try:
        doc = json.loads(payload)
        signed = SignedConfig.model_validate(doc)
    except (ValueError, ValidationError) as exc:
        raise ConfigRefused("malformed", str(exc)[:200]) from None
    check_signature(doc, public_key)
    if signed.site != site or signed.device != device:
        raise ConfigRefused("wrong_device", f"for {signed.site}/{signed.device}, not {site}/{device}")
    if signed.version <= applied_version:
        raise ConfigRefused("old_version", f"version {signed.version} is not newer than the applied {applied_version}")
    return signed


def create_keys(directory: Path, *, force: bool = False, stem: str = "site-signing") -> tuple[Path, Path]:
    """Create a signing key `<stem>.key` (private: owner read/write only) and its public half `<stem>.pub` (default: the site's)."""
    directory.mkdir(parents=True, exist_ok=True)
    private_path, public_path = directory / f"{stem}.key", directory / f"{stem}.pub"
    if private_path.exists() and not force:
        raise FileExistsError(f"{private_path} exists; keep it (devices trust it) or pass --force to replace it")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    private_path.unlink(missing_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others, not even briefly
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public_path.write_text(public_key_text(key.public_key()) + "\n")
    return private_path, public_path


def public_key_text(public_key: Ed25519PublicKey) -> str:
    """The public key as devices are given it: base64 of the 32 raw bytes."""
    return base64.b64encode(public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The site signing key; refuses a key file others can read."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionError(f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(text: str) -> Ed25519PublicKey:
    """A public key from its base64 text (the content of site-signing.pub)."""
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text.strip(), validate=True))
