"""Evidence files to the command centre: each snapshot and clip an escalation lists is uploaded to the district hub,
authenticated as the site, resumed where the hub's copy stopped after a dropped link, SHA-256 checked by the hub.

Nothing here is on the alarm path: the edge hands a file over with `submit` (a queue put, never waiting) and one
task uploads, one file at a time, oldest first. The queue is kept in a small SQLite file next to the outbox, so an
edge restarted with uploads pending resumes them. A failed attempt is retried with exponential backoff (1 s to
5 min), starting again at once when the last attempt moved the hub's copy forward. The hub's protocol is in
hub/evidence.py: ask how many bytes it holds, PUT the rest with `Content-Range`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from guardlink.models import Evidence
from guardlink.siteconfig import EvidenceUpload

log = logging.getLogger(__name__)

RETRY_FIRST_S = 1.0
RETRY_MAX_S = 300.0
READ_BYTES = 256 * 1024  # the file is read and sent in pieces of this size
TIMEOUT_S = 30.0  # connect, and between two pieces of the exchange

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    escalation TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    evidence   TEXT NOT NULL,
    queued_at  REAL NOT NULL,
    failed     TEXT,
    PRIMARY KEY (escalation, sha256)
);
"""


class Refused(Exception):
    """The hub will never take this file as it is (too large, wrong type, changed on disk): not retried."""


@dataclass(slots=True)
class Upload:
    """One file waiting for the hub."""

    escalation: str
    evidence: Evidence
    attempts: int = 0
    due: float = 0.0
    held: int = -1  # bytes the hub said it held at the last attempt

    @property
    def key(self) -> tuple[str, str]:
        return self.escalation, self.evidence.sha256


class EvidenceUploader:
    """Uploads evidence files to the hub from a durable queue, in its own task."""

    def __init__(
        self,
        url: str,
        token: Callable[[], str],
        queue_path: Path,
        *,
        clock: Callable[[], float] = time.time,
        retry_first_s: float = RETRY_FIRST_S,
        retry_max_s: float = RETRY_MAX_S,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        """`token()` gives the site account's API token, read at each attempt (a replaced token file is picked up)."""
        self.url = url.rstrip("/")
        self.token = token
        self.queue_path = queue_path
        self.clock = clock
        self.retry_first_s = retry_first_s
        self.retry_max_s = retry_max_s
        self.timeout_s = timeout_s
        self.uploaded = 0
        self.refused = 0
        self.pending: dict[tuple[str, str], Upload] = {}
        self._incoming: asyncio.Queue[Upload] = asyncio.Queue()
        self._submitted: list[Upload] = []  # submitted, not yet in `pending`
        self._loaded = False  # the queue file's uploads are in `pending`
        self._db: sqlite3.Connection | None = None

    def waiting_paths(self) -> set[str] | None:
        """The files that still have to go to the hub; None until the queue file is read (any file may be one)."""
        if not self._loaded:
            return None
        return {u.evidence.path for u in [*self.pending.values(), *self._submitted]}

    def submit(self, escalation_id: str, evidence: Evidence) -> None:
        """Upload this file of this escalation; returns at once."""
        upload = Upload(escalation_id, evidence)
        self._submitted.append(upload)
        self._incoming.put_nowait(upload)

    async def run(self) -> None:
        """Upload until cancelled: first what the queue file holds from before, then what is submitted."""
        self._db = await asyncio.to_thread(_open, self.queue_path)
        try:
            for upload in await asyncio.to_thread(self._load):
                self.pending[upload.key] = upload
            self._loaded = True
            if self.pending:
                log.info("event=evidence_uploads_resumed pending=%d", len(self.pending))
            async with httpx.AsyncClient(base_url=self.url, timeout=self.timeout_s) as client:
                while True:
                    await self._take_submitted()
                    due = [u for u in self.pending.values() if u.due <= self.clock()]
                    if not due:
                        await self._wait_for_work()
                        continue
                    upload = min(due, key=lambda u: u.due)
                    await self._attempt(client, upload)
        finally:
            db, self._db = self._db, None
            await asyncio.to_thread(db.close)

    # -- the queue -------------------------------------------------------------------------------

    async def _take_submitted(self) -> None:
        new = []
        while not self._incoming.empty():
            upload = self._incoming.get_nowait()
            if upload.key not in self.pending:
                new.append(upload)
                self.pending[upload.key] = upload
        self._submitted = [u for u in self._submitted if u.key not in self.pending]
        if new:
            await asyncio.to_thread(self._store, new)

    async def _wait_for_work(self) -> None:
        """Until something is submitted or the next retry is due."""
        wake_in = min((u.due for u in self.pending.values()), default=self.clock() + 3600) - self.clock()
        try:
            upload = await asyncio.wait_for(self._incoming.get(), max(0.0, wake_in))
        except TimeoutError:
            return
        self._incoming.put_nowait(upload)  # taken (and stored) by the loop with any others

    def _store(self, uploads: list[Upload]) -> None:
        assert self._db is not None
        with self._db:
            self._db.executemany(
                "INSERT OR IGNORE INTO uploads (escalation, sha256, evidence, queued_at) VALUES (?, ?, ?, ?)",
                [(u.escalation, u.evidence.sha256, u.evidence.model_dump_json(), self.clock()) for u in uploads],
            )

    def _load(self) -> list[Upload]:
        assert self._db is not None
        rows = self._db.execute("SELECT escalation, evidence FROM uploads WHERE failed IS NULL ORDER BY queued_at").fetchall()
        return [Upload(escalation, Evidence.model_validate_json(evidence)) for escalation, evidence in rows]

    def _finish(self, upload: Upload, failed: str | None) -> None:
        assert self._db is not None
        with self._db:
            if failed is None:
                self._db.execute("DELETE FROM uploads WHERE escalation = ? AND sha256 = ?", upload.key)
            else:
                self._db.execute("UPDATE uploads SET failed = ? WHERE escalation = ? AND sha256 = ?", (failed, *upload.key))

    # -- one attempt -----------------------------------------------------------------------------

    async def _attempt(self, client: httpx.AsyncClient, upload: Upload) -> None:
        evidence = upload.evidence
        try:
            done = await self._send(client, upload)
        except Refused as exc:
            self.refused += 1
            del self.pending[upload.key]
            await asyncio.to_thread(self._finish, upload, str(exc))
            log.error("event=evidence_upload_refused escalation=%s file=%s reason=%r", upload.escalation, evidence.path, str(exc))
            return
        except (httpx.HTTPError, OSError, ValueError) as exc:
            done = False
            log.warning("event=evidence_upload_failed escalation=%s file=%s attempt=%d error=%r", upload.escalation, evidence.path, upload.attempts + 1, str(exc) or type(exc).__name__)
        if done:
            self.uploaded += 1
            del self.pending[upload.key]
            await asyncio.to_thread(self._finish, upload, None)
            log.info("event=evidence_uploaded escalation=%s camera=%s kind=%s bytes=%d", upload.escalation, evidence.camera, evidence.kind, evidence.bytes)
            return
        delay = min(self.retry_max_s, self.retry_first_s * 2**upload.attempts) * random.uniform(0.8, 1.0)
        upload.attempts += 1
        upload.due = self.clock() + delay

    async def _send(self, client: httpx.AsyncClient, upload: Upload) -> bool:
        """Ask the hub how much it holds, send the rest; True once the hub holds the whole file, checked."""
        evidence = upload.evidence
        path = Path(evidence.path)
        if not await asyncio.to_thread(path.is_file):
            raise Refused(f"{path} is gone")
        headers = {"Authorization": f"Bearer {self.token()}"}
        where = f"/api/evidence/{upload.escalation}/{evidence.sha256}"
        status = await client.get(f"{where}/status", headers=headers)
        _raise_for(status)
        held = int(status.json()["received"])
        if status.json()["complete"]:
            return True
        if held > upload.held:
            upload.attempts = 0  # the last attempt moved the hub's copy forward: no reason to wait longer
        upload.held = held
        if not 0 <= held < evidence.bytes:
            held = 0
        headers |= {
            "Content-Type": evidence.media_type, "Content-Range": f"bytes {held}-{evidence.bytes - 1}/{evidence.bytes}",
            "Content-Length": str(evidence.bytes - held),
        }
        answer = await client.put(where, params={"camera": evidence.camera, "kind": evidence.kind}, headers=headers, content=_read_from(path, held))
        if answer.status_code == 422 and await asyncio.to_thread(file_sha256, path) != evidence.sha256:
            raise Refused(f"{path} no longer hashes to {evidence.sha256}: changed on disk")
        _raise_for(answer)
        return answer.status_code == 200 and bool(answer.json().get("complete"))


def _raise_for(response: httpx.Response) -> None:
    """Refused for what no retry mends; HTTPStatusError (retried) for the rest, 404 included (the escalation may still be on its way)."""
    if response.status_code in (400, 411, 413, 415):
        raise Refused(f"the hub answered {response.status_code}: {response.text[:300]}")
    if response.status_code >= 400 and response.status_code != 409:
        if response.status_code in (401, 403):
            log.error("event=evidence_upload_unauthorised status=%d detail=%r: check the upload token (a site account's)", response.status_code, response.text[:200])
        response.raise_for_status()


async def _read_from(path: Path, offset: int) -> AsyncIterator[bytes]:
    """The file's bytes from `offset` on, read off the event loop."""
    with path.open("rb") as file:
        await asyncio.to_thread(file.seek, offset)
        while piece := await asyncio.to_thread(file.read, READ_BYTES):
            yield piece


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's contents, lower-case hex."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _open(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(_SCHEMA)
    return db


def evidence_uploader(settings: EvidenceUpload | None, outbox_path: Path) -> EvidenceUploader | None:
    """The site's uploader (its queue next to the outbox), or None when the site file has no `upload` section."""
    if settings is None:
        return None
    return EvidenceUploader(settings.url, settings.token, outbox_path.with_name(outbox_path.stem + "-uploads.db"))
