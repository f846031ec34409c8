"""Signed configuration: keys, push, device-side verification and the installer's status table, on a real broker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from device_drivers.simulators import SiteSimulator
from guardlink import topics
from guardlink.provisioning import (
    ConfigRefused,
    create_keys,
    load_private_key,
    load_public_key,
    sign_config,
    verify_config,
)

from conftest import GUARDLINK, REPO, SCHOOL, running_edge, wait_until

SITE = "hohhot-no3-primary"
NOW = datetime(2026, 11, 22, tzinfo=timezone.utc).isoformat()


@pytest.fixture
def keys(tmp_path: Path):
    private_path, public_path = create_keys(tmp_path / "keys")
    return private_path, public_path, load_private_key(private_path), load_public_key(public_path.read_text())


def test_keys_init_writes_an_owner_only_private_key_and_refuses_to_overwrite(tmp_path):
    run = lambda: subprocess.run([*GUARDLINK, "keys", "init", "--dir", str(tmp_path)], capture_output=True, text=True, timeout=30)  # noqa: E731
    first = run()
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "site-signing.key").stat().st_mode & 0o777 == 0o600
    assert first.stdout.strip() == (tmp_path / "site-signing.pub").read_text().strip()
    again = run()
    assert again.returncode == 1 and "--force" in again.stderr


def test_a_key_others_can_read_is_refused(keys):
    private_path = keys[0]
    os.chmod(private_path, 0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_private_key(private_path)


@pytest.mark.parametrize(
    "tamper, reason",
    [
        (lambda d: d.update(config={"heartbeat_s": 1}), "bad_signature"),
        (lambda d: d.update(signature=""), "unsigned"),
        (lambda d: d.pop("signature"), "malformed"),
        (lambda d: d.update(version=d["version"] + 1), "bad_signature"),
    ],
)
def test_devices_refuse_tampered_or_unsigned_configs(keys, tamper, reason):
    _, _, private, public = keys
    doc = json.loads(sign_config(private, SITE, "wear-li", 2, {"heartbeat_s": 30}, NOW).to_json())
    tamper(doc)
    with pytest.raises(ConfigRefused) as refused:
        verify_config(json.dumps(doc).encode(), public, site=SITE, device="wear-li")
    assert refused.value.reason == reason


def test_devices_refuse_configs_for_others_old_versions_and_foreign_keys(keys, tmp_path):
    _, _, private, public = keys
    signed = sign_config(private, SITE, "wear-li", 2, {}, NOW).to_json()
    assert verify_config(signed, public, site=SITE, device="wear-li", applied_version=1).version == 2
    for kwargs, reason in (({"device": "wear-zhang"}, "wrong_device"), ({"applied_version": 2}, "old_version")):
        with pytest.raises(ConfigRefused, match=reason):
            verify_config(signed, public, **({"site": SITE, "device": "wear-li"} | kwargs))
    _, other_public = create_keys(tmp_path / "other")
    with pytest.raises(ConfigRefused, match="bad_signature"):
        verify_config(signed, load_public_key(other_public.read_text()), site=SITE, device="wear-li")


def guardlink(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*GUARDLINK, *args], capture_output=True, text=True, timeout=60, cwd=REPO)


async def test_push_apply_report_and_status(school, mosquitto, keys, recorder, tmp_path):
    private_path, public_path, _, public = keys
    reports = recorder(mosquitto, topics.device_config_applied(SITE, "+"))
    async with running_edge(school, mosquitto, mosquitto, tmp_path / "outbox.db"):
        with SiteSimulator(school, mosquitto, seed=3, public_key=public) as sim:
            await asyncio.to_thread(sim.report_positions)
            pushed = await asyncio.to_thread(guardlink, "config", "push", str(SCHOOL), "--broker", str(mosquitto), "--key", str(private_path))
            assert pushed.returncode == 0, pushed.stderr
            assert pushed.stdout.count("pushed") == len(school.devices)
            native = [d.id for d in school.devices if d.driver == "guardlink_wearable"]
            await wait_until(lambda: len(reports.payloads()) == len(native), what="every native device's report")
            assert {json.loads(p)["status"] for p in reports.payloads()} == {"applied"}
            assert sim.applied["wear-wang"].config["settings"]["position_every_s"] == 5, "site override of the template"
            # An unchanged site pushes nothing new; a forged config is refused and reported.
            again = await asyncio.to_thread(guardlink, "config", "push", str(SCHOOL), "--broker", str(mosquitto), "--key", str(private_path))
            assert again.stdout.count("unchanged") == len(school.devices)
            forged = json.loads(sim.applied["wear-li"].to_json()) | {"version": 9, "config": {"heartbeat_s": 1}}
            await asyncio.to_thread(sim.publish_raw, topics.device_config(SITE, "wear-li"), json.dumps(forged).encode())
            await wait_until(lambda: any(json.loads(p)["status"] == "refused" for p in reports.payloads()), what="the refusal")
            status = await asyncio.to_thread(guardlink, "config", "status", str(SCHOOL), "--broker", str(mosquitto), "--json")
    assert status.returncode == 0, status.stderr
    rows = {r["device"]: r for r in map(json.loads, status.stdout.splitlines())}
    assert rows["wear-li"]["config_refused"] == "bad_signature" and rows["wear-li"]["config_pending"] == 1, "the forgery was not retained"
    assert rows["wear-zhang"]["config_applied"] == rows["wear-zhang"]["config_pending"] == 1
    assert rows["wear-zhang"]["state"] == "online" and rows["wear-zhang"]["last_seen"]
    assert rows["btn-gate"]["config_pending"] == 1 and rows["btn-gate"]["config_applied"] is None
    table = await asyncio.to_thread(guardlink, "config", "status", str(SCHOOL), "--broker", str(mosquitto))
    assert "wear-zhang" in table.stdout and "1 / 1" in table.stdout


def test_validate_reports_every_error_with_positions_and_exit_codes(tmp_path):
    good = guardlink("config", "validate", str(SCHOOL))
    assert good.returncode == 0 and "ok (7 devices" in good.stderr
    bad = tmp_path / "sites" / "bad.yaml"
    bad.parent.mkdir()
    (tmp_path / "templates").symlink_to(SCHOOL.parent.parent / "templates")
    bad.write_text(
        SCHOOL.read_text()
        .replace("zone: hall", "zone: hal")
        .replace("{id: wear-zhang, template: guardlink-wearable-w1}", "{id: wear-li, template: guardlink-wearable-w1}")
        .replace("wearable: phone-zhao", "wearable: phone-zhou")
        .replace("template: owntracks-phone", "template: owntracks-fone")
    )
    result = guardlink("config", "validate", str(bad), str(SCHOOL))
    assert result.returncode == 1
    messages = result.stdout.splitlines()
    assert all(m.startswith(f"{bad}:") for m in messages)
    text = "\n".join(messages)
    for expected in ("refers to zone 'hal'", "duplicate device id 'wear-li'", "wears 'phone-zhou'", "unknown template 'owntracks-fone'"):
        assert expected in text
    assert len(messages) >= 4
    assert [tuple(map(int, m.split(":")[1:3])) for m in messages] == sorted(tuple(map(int, m.split(":")[1:3])) for m in messages)
