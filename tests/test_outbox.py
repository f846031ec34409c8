"""The outbox keeps every revision on disk, in order, until delivered; a bad disk degrades it loudly, never silently."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.escalations import first_revision, revised
from gateway.outbox import Outbox
from guardlink.models import EscalationStatus, Incident, IncidentKind, Severity, iso


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def incident(severity: Severity = Severity.CRITICAL, device: str = "btn-gate") -> Incident:
    kind = IncidentKind.PANIC if severity is Severity.CRITICAL else IncidentKind.DEVICE_OFFLINE
    return Incident(kind=kind, severity=severity, device=device, location=None, detected_at=iso(1_800_000_000.0))


async def store(outbox: Outbox, school, severity: Severity = Severity.CRITICAL, source: str | None = None):
    escalation = first_revision(school, incident(severity), 1, now=outbox.clock(), sequence=outbox.next_sequence())
    on_disk = await outbox.append(escalation, source)
    return escalation, on_disk


async def test_revisions_survive_a_restart_in_order_until_delivered(tmp_path, school):
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    await outbox.open()
    stored = [await store(outbox, school) for _ in range(5)]
    assert all(on_disk for _, on_disk in stored)
    outbox.delivered(outbox.deliverable(2))
    await outbox.close()

    reopened = Outbox(path)
    await reopened.open()
    assert [p.escalation for p in reopened.deliverable(100)] == [e for e, _ in stored[2:]]
    assert reopened.next_sequence() == 6, "sequence numbers continue after a restart"
    await reopened.close()


async def test_a_burst_of_concurrent_appends_is_stored_in_call_order(tmp_path, school):
    outbox = Outbox(tmp_path / "outbox.db")
    await outbox.open()
    escalations = [first_revision(school, incident(), 1, now=1.0, sequence=outbox.next_sequence()) for _ in range(500)]
    results = await asyncio.gather(*(outbox.append(e) for e in escalations))
    assert all(results)
    await outbox.close()
    reopened = Outbox(tmp_path / "outbox.db")
    await reopened.open()
    assert [p.escalation.sequence for p in reopened.deliverable(1000)] == list(range(1, 501))
    await reopened.close()


async def test_a_stored_source_message_is_recognised_when_redelivered_also_after_a_restart(tmp_path, school):
    outbox = Outbox(tmp_path / "outbox.db")
    await outbox.open()
    await store(outbox, school, source="device:btn-gate@3#7")
    assert outbox.holds("device:btn-gate@3#7")
    outbox.delivered(outbox.deliverable(10))
    await outbox.close()
    reopened = Outbox(tmp_path / "outbox.db")
    await reopened.open()
    assert reopened.holds("device:btn-gate@3#7")
    assert not reopened.holds("device:btn-gate@3#8")
    await reopened.close()


async def test_a_message_set_aside_and_saved_state_are_kept(tmp_path):
    outbox = Outbox(tmp_path / "outbox.db")
    await outbox.open()
    await outbox.set_aside("site", "guardlink/s/dev/x/up", b"\x00bad", "KeyError: 'seq'")
    await outbox.save_state("replay_guard", '{"x": [[1, 5]]}')
    await outbox.save_state("replay_guard", '{"x": [[1, 6]]}')
    assert await outbox.load_state("replay_guard") == '{"x": [[1, 6]]}'
    await outbox.close()
    with sqlite3.connect(tmp_path / "outbox.db") as db:
        assert db.execute("SELECT origin, topic, bytes, payload, error FROM set_aside").fetchall() == [
            ("site", "guardlink/s/dev/x/up", 4, b"\x00bad", "KeyError: 'seq'")
        ]


async def test_only_non_critical_revisions_expire(tmp_path, school):
    clock = FakeClock()
    outbox = Outbox(tmp_path / "outbox.db", clock=clock, expire_after_s=60)
    await outbox.open()
    await store(outbox, school, Severity.WARNING)
    critical, _ = await store(outbox, school, Severity.CRITICAL)
    clock.now += 61
    assert [p.escalation for p in outbox.deliverable(10)] == [critical]
    assert outbox.expired == 1
    clock.now += 10 * 365 * 86400
    assert [p.escalation for p in outbox.deliverable(10)] == [critical], "critical incidents never expire"
    await outbox.close()


async def test_later_revisions_keep_the_id_and_follow_in_sequence(tmp_path, school):
    outbox = Outbox(tmp_path / "outbox.db")
    await outbox.open()
    first, _ = await store(outbox, school)
    second = revised(first, status=EscalationStatus.RESOLVED, now=2.0, sequence=outbox.next_sequence(), detail="back")
    assert await outbox.append(second)
    pending = [p.escalation for p in outbox.deliverable(10)]
    assert [(e.id, e.revision, e.sequence) for e in pending] == [(first.id, 1, 1), (first.id, 2, 2)]
    assert pending[1].incident.detail == "back"
    await outbox.close()


async def test_an_unwritable_outbox_fails_loudly_and_keeps_revisions_deliverable(unwritable_dir, school, caplog):
    caplog.set_level(logging.ERROR, logger="gateway.outbox")
    outbox = Outbox(unwritable_dir / "outbox.db")
    await outbox.open()
    assert outbox.health.startswith("failing: cannot open")
    escalation, on_disk = await store(outbox, school)
    assert on_disk is False
    assert [p.escalation for p in outbox.deliverable(10)] == [escalation], "still delivered, from memory"
    assert any("event=outbox_failing" in r.getMessage() for r in caplog.records)
    await outbox.close()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    target = tmp_path / "tiny"
    target.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(target)], capture_output=True).returncode != 0:
        pytest.skip("filling a disk needs a small tmpfs, and this machine does not allow mounting one")
    try:
        yield target
    finally:
        subprocess.run(["umount", "--lazy", str(target)], check=True)  # lazy: an open file must not leave the mount behind


async def test_a_full_disk_holds_revisions_in_memory_and_writes_them_once_space_returns(tiny_disk, school):
    outbox = Outbox(tiny_disk / "outbox.db")
    await outbox.open()
    before, on_disk = await store(outbox, school)
    assert on_disk and outbox.ok
    filler = tiny_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass  # the disk is full
    finally:
        os.close(fd)
    during = [await store(outbox, school) for _ in range(3)]
    assert not any(on_disk for _, on_disk in during)
    assert outbox.health.startswith("failing")
    filler.unlink()
    after, on_disk = await store(outbox, school)
    assert on_disk and outbox.ok
    await outbox.close()
    reopened = Outbox(tiny_disk / "outbox.db")
    await reopened.open()
    assert [p.escalation for p in reopened.deliverable(10)] == [before, *(e for e, _ in during), after]
    await reopened.close()
