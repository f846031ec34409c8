"""Evidence at the command centre: each site uploads the snapshots and clips of its own escalations (resumable,
SHA-256 checked), and police users fetch them with the same rules as the incident (HTTP Range, for video seeking).

The upload protocol, for a file of TOTAL bytes whose SHA-256 is SHA (authenticated as a `site` account):
- `GET /api/evidence/{escalation}/{SHA}/status` says how many bytes the hub holds (`received`) and whether the
  file is complete;
- `PUT /api/evidence/{escalation}/{SHA}?camera=CAM&kind=snapshot|clip` with `Content-Type` (image/jpeg or
  video/mp4) and `Content-Range: bytes START-END/TOTAL` sends the bytes from START on (START at most `received`;
  no header: the whole file). Bytes are written at their offsets as they arrive, so whatever reached the hub
  before a link dropped is kept and the next PUT continues from there. When the hub holds TOTAL bytes it checks
  the SHA-256: 200 and `complete` when it matches; 422 when not, and the bytes are discarded (send it again).
  202: stored so far, not complete. 409: START is past `received` (the answer says how much it has).
Writes at fixed offsets make two PUTs of the same file harmless to each other: the same offset always gets the
same byte, since the file is named by its hash.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, and `User` is local to the router.
import asyncio
import logging
import os
import re
from collections.abc import Callable, Collection
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.requests import ClientDisconnect

from gateway.durable import replace_durably
from gateway.evidence_upload import file_sha256
from guardlink.districtconfig import DistrictConfig
from hub.accounts import Principal, Role
from hub.tables import EscalationRow, EvidenceRow

log = logging.getLogger(__name__)

MEDIA_TYPES = {"image/jpeg": ".jpg", "video/mp4": ".mp4"}
WRITE_BYTES = 1 << 20  # what arrives is written to disk in pieces of up to this size
CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
ESCALATION_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
SHA256 = r"^[0-9a-f]{64}$"

EscalationId = Annotated[str, PathParam(pattern=ESCALATION_ID)]
Sha256 = Annotated[str, PathParam(pattern=SHA256, description="the file's SHA-256, lower-case hex")]


class EvidenceStatus(BaseModel):
    """How much of an evidence file the hub holds."""

    escalation: str
    sha256: str
    bytes: int | None  # as announced by the site; None before its first upload
    received: int
    complete: bool


def evidence_url(escalation_id: str, sha256: str) -> str:
    """Where police users fetch an evidence file (the console's <img>/<video> source)."""
    return f"/api/incidents/{escalation_id}/evidence/{sha256}"


def uploaded_evidence(db: Session, escalation_id: str) -> set[str]:
    """The SHA-256 of every evidence file of the escalation the hub holds complete and checked."""
    query = select(EvidenceRow.sha256).where(EvidenceRow.escalation_id == escalation_id, EvidenceRow.complete.is_(True))
    return set(db.scalars(query))


def evidence_router(engine: Engine, config: DistrictConfig, principal: Callable[..., Principal]) -> APIRouter:
    """Upload (sites) and download (police) of evidence files; `principal` is the API's who-is-asking dependency."""
    directory = config.evidence_path(engine.url.database if engine.dialect.name == "sqlite" else None)
    max_bytes = int(config.settings.evidence_max_mb * 1_000_000)
    community_sites: dict[str, Collection[str]] = {c.id: c.sites for c in config.communities}
    completing: dict[tuple[str, str], asyncio.Lock] = {}
    User = Annotated[Principal, Depends(principal)]
    router = APIRouter(tags=["evidence"])

    def now() -> datetime:
        return datetime.now(timezone.utc)

    def uploader(user: Principal) -> str:
        if user.role is not Role.SITE or user.site is None:
            raise HTTPException(403, f"user {user.name!r} is a {user.role.value}: only site accounts upload evidence")
        return user.site

    def own_escalation(db: Session, escalation_id: str, site: str) -> EscalationRow:
        row = db.get(EscalationRow, escalation_id)
        if row is None or row.site != site:  # another site's escalation looks the same as one not (yet) at the hub
            raise HTTPException(404, f"no escalation {escalation_id!r} of site {site!r} at the hub (yet): upload after its revision is delivered")
        return row

    def held(row: EvidenceRow | None) -> int:
        if row is None:
            return 0
        if row.complete:
            return row.bytes_expected
        partial = _partial(directory / row.path)
        return partial.stat().st_size if partial.exists() else 0

    def status_of(escalation_id: str, sha256: str, row: EvidenceRow | None) -> EvidenceStatus:
        return EvidenceStatus(
            escalation=escalation_id, sha256=sha256, bytes=row.bytes_expected if row else None, received=held(row), complete=bool(row and row.complete)
        )

    @router.get("/api/evidence/{escalation_id}/{sha256}/status", response_model=EvidenceStatus, responses={403: {}, 404: {}})
    def upload_status(escalation_id: EscalationId, sha256: Sha256, user: User) -> EvidenceStatus:
        """How many bytes of this file the hub holds, so that an interrupted upload continues from there (site accounts)."""
        site = uploader(user)
        with Session(engine) as db:
            own_escalation(db, escalation_id, site)
            return status_of(escalation_id, sha256, db.get(EvidenceRow, (escalation_id, sha256)))

    def begin(escalation_id: str, sha256: str, site: str, camera: str, kind: str, media_type: str, total: int) -> EvidenceRow:
        """The file's row, created on its first upload; 409 when this upload describes the file differently."""
        with Session(engine, expire_on_commit=False) as db:
            own_escalation(db, escalation_id, site)
            row = db.get(EvidenceRow, (escalation_id, sha256))
            if row is None:
                at = now()
                row = EvidenceRow(
                    escalation_id=escalation_id, sha256=sha256, site=site, camera=camera, kind=kind, media_type=media_type, bytes_expected=total,
                    bytes_received=0, path=f"{site}/{escalation_id}/{sha256}{MEDIA_TYPES[media_type]}", complete=False, created_at=at, updated_at=at,
                )
                db.add(row)
                try:
                    db.commit()
                except IntegrityError:  # the same file's other upload created it meanwhile
                    db.rollback()
                    row = db.get(EvidenceRow, (escalation_id, sha256))
            assert row is not None
            if (row.bytes_expected, row.media_type, row.kind, row.camera) != (total, media_type, kind, camera):
                raise HTTPException(409, f"evidence {sha256} of {escalation_id!r} was announced as {row.kind} of {row.camera}, {row.media_type}, {row.bytes_expected} bytes")
            return row

    def record(row: EvidenceRow, received: int, complete: bool) -> None:
        with Session(engine) as db, db.begin():
            stored = db.get(EvidenceRow, (row.escalation_id, row.sha256))
            if stored is None or stored.complete:
                return
            stored.bytes_received, stored.complete, stored.updated_at = received, complete, now()
            if complete:
                stored.completed_at = stored.updated_at

    @router.put(
        "/api/evidence/{escalation_id}/{sha256}", response_model=EvidenceStatus,
        responses={202: {"description": "stored so far, not complete"}, 403: {}, 404: {}, 409: {}, 413: {}, 415: {}, 422: {"description": "SHA-256 mismatch: discarded"}},
    )
    async def upload(
        escalation_id: EscalationId,
        sha256: Sha256,
        request: Request,
        user: User,
        camera: Annotated[str, Query(min_length=1, max_length=64)],
        kind: Annotated[Literal["snapshot", "clip"], Query()],
        content_type: Annotated[str, Header()],
        content_range: Annotated[str | None, Header(description="bytes START-END/TOTAL; absent: the whole file")] = None,
        content_length: Annotated[int | None, Header()] = None,
    ) -> JSONResponse:
        """Store bytes of an evidence file of one of this site's escalations, from START on (see the module's protocol)."""
        site = uploader(user)
        media_type = content_type.split(";")[0].strip().lower()
        if media_type not in MEDIA_TYPES:
            raise HTTPException(415, f"evidence is {' or '.join(MEDIA_TYPES)}, not {media_type!r}")
        start, end, total = _content_range(content_range, content_length)
        if total > max_bytes:
            raise HTTPException(413, f"{total} bytes is more than this hub takes ({max_bytes}; district settings.evidence_max_mb)")
        row = await run_in_threadpool(begin, escalation_id, sha256, site, camera, kind, media_type, total)
        if row.complete:
            return _answer(200, status_of(escalation_id, sha256, row))
        final = directory / row.path
        partial = _partial(final)
        await asyncio.to_thread(partial.parent.mkdir, parents=True, exist_ok=True)
        have = await asyncio.to_thread(lambda: partial.stat().st_size if partial.exists() else 0)
        if start > have:
            return _answer(409, status_of(escalation_id, sha256, row), f"the hub holds {have} bytes: continue from there")
        position = await _receive(request, partial, start, end + 1)
        have = max(have, position)
        if have < total:
            await run_in_threadpool(record, row, have, False)
            return _answer(202, status_of(escalation_id, sha256, row))
        done = EvidenceStatus(escalation=escalation_id, sha256=sha256, bytes=total, received=total, complete=True)
        async with completing.setdefault((escalation_id, sha256), asyncio.Lock()):
            if not await asyncio.to_thread(partial.exists):  # the same file's other upload completed it meanwhile
                return _answer(200, done)
            digest = await asyncio.to_thread(file_sha256, partial)
            if digest != sha256:
                await asyncio.to_thread(partial.unlink)
                await run_in_threadpool(record, row, 0, False)
                log.warning("event=evidence_rejected site=%s escalation=%s sha256=%s got=%s bytes=%d", site, escalation_id, sha256, digest, total)
                return _answer(422, status_of(escalation_id, sha256, row), f"the {total} bytes received hash to {digest}, not {sha256}: discarded, send the file again")
            await asyncio.to_thread(replace_durably, partial, final)
            await run_in_threadpool(record, row, total, True)
        log.info("event=evidence_stored site=%s escalation=%s camera=%s kind=%s bytes=%d", site, escalation_id, camera, kind, total)
        return _answer(200, done)

    @router.get("/api/incidents/{incident_id}/evidence/{sha256}", response_class=FileResponse, responses={206: {}, 404: {}, 416: {}})
    def evidence_file(incident_id: EscalationId, sha256: Sha256, user: User) -> FileResponse:
        """An evidence file of an incident the user may see (a chief: their communities' sites), once uploaded; HTTP Range for seeking."""
        sites = user.visible_sites(community_sites)
        with Session(engine) as db:
            incident = db.get(EscalationRow, incident_id)
            row = db.get(EvidenceRow, (incident_id, sha256)) if incident is not None and (sites is None or incident.site in sites) else None
            if row is None or not row.complete:
                raise HTTPException(404, f"no evidence {sha256} of incident {incident_id!r} at the hub (unknown, or not uploaded yet)")
            path, media_type = directory / row.path, row.media_type
        return FileResponse(
            path, media_type=media_type, headers={"Cache-Control": "private, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"}
        )

    return router


async def _receive(request: Request, partial: Path, start: int, end: int) -> int:
    """Write the request body at offset `start` as it arrives; the offset reached (also when the client went away)."""
    fd = await asyncio.to_thread(os.open, partial, os.O_WRONLY | os.O_CREAT, 0o640)
    position, buffer = start, bytearray()
    try:
        try:
            async for chunk in request.stream():
                if position + len(buffer) + len(chunk) > end:
                    raise HTTPException(400, f"more bytes than Content-Range announced (it ends at byte {end - 1})")
                buffer += chunk
                if len(buffer) >= WRITE_BYTES:
                    position += await asyncio.to_thread(_write, fd, bytes(buffer), position)
                    buffer.clear()
        except ClientDisconnect:
            log.info("event=evidence_upload_cut file=%s offset=%d", partial.name, position + len(buffer))
        if buffer:
            position += await asyncio.to_thread(_write, fd, bytes(buffer), position)
        await asyncio.to_thread(os.fsync, fd)
    finally:
        await asyncio.to_thread(os.close, fd)
    return position


def _write(fd: int, data: bytes, offset: int) -> int:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written
    return len(data)


def _partial(final: Path) -> Path:
    return final.with_name(final.name + ".partial")


def _content_range(header: str | None, length: int | None) -> tuple[int, int, int]:
    """(start, end inclusive, total) from `Content-Range: bytes START-END/TOTAL`, or the whole file by Content-Length."""
    if header is None:
        if length is None:
            raise HTTPException(411, "send Content-Length (the whole file) or Content-Range: bytes START-END/TOTAL")
        return 0, length - 1, length
    match = CONTENT_RANGE.match(header.strip())
    if not match:
        raise HTTPException(400, f"Content-Range {header!r} is not 'bytes START-END/TOTAL'")
    start, end, total = map(int, match.groups())
    if not start <= end < total:
        raise HTTPException(400, f"Content-Range {header!r}: START <= END < TOTAL")
    return start, end, total


def _answer(status: int, body: EvidenceStatus, detail: str | None = None) -> JSONResponse:
    return JSONResponse({**body.model_dump(), **({"detail": detail} if detail else {})}, status_code=status)
