"""The command centre's tip queue: information tips guards send from the guard app (category, text, photo, where), which
police accept or reject. A tip is checked before it is stored: its text is kept as plain text (control characters
dropped; every client shows it as text, never as markup), its photo must really be a JPEG, PNG or WebP image no larger than
`TIP_PHOTO_MAX_BYTES`, and it is served back only as that image type, with a policy that runs nothing."""

from __future__ import annotations

import base64
import binascii
import logging
import unicodedata
from collections.abc import Callable, Collection
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from guardlink.districtconfig import DistrictConfig
from guardlink.patrol import TIP_PHOTO_MAX_BYTES, Tip
from hub.accounts import Principal
from hub.field_tables import TipRow
from hub.tables import ChangeKind, ChangeRow

log = logging.getLogger(__name__)

MAGIC = {"image/jpeg": (b"\xff\xd8\xff",), "image/png": (b"\x89PNG\r\n\x1a\n",), "image/webp": (b"RIFF",)}


class TipRefused(ValueError):
    """A tip that is not stored, and why."""


def plain_text(text: str) -> str:
    """The text without control or format characters (newlines and tabs kept): nothing that could hide or reorder what police read."""
    return "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C").strip()


def photo_bytes(tip: Tip) -> bytes | None:
    """The tip's photo, checked: decodable, within the size limit, and the image type it claims (by its first bytes)."""
    if tip.photo is None:
        return None
    if tip.photo_type is None:
        raise TipRefused("a photo needs its photo_type")
    try:
        data = base64.b64decode(tip.photo, validate=True)
    except (binascii.Error, ValueError):
        raise TipRefused("the photo is not base64") from None
    if len(data) > TIP_PHOTO_MAX_BYTES:
        raise TipRefused(f"the photo is {len(data)} bytes; at most {TIP_PHOTO_MAX_BYTES}")
    if not data.startswith(MAGIC[tip.photo_type]) or (tip.photo_type == "image/webp" and data[8:12] != b"WEBP"):
        raise TipRefused(f"the photo is not a {tip.photo_type} image")
    return data


def store_tip(session: Session, config: DistrictConfig, site: str, tip: Tip, now: datetime) -> TipRow | None:
    """Queue a tip from `site` (with its `changes` row); None for a copy already queued. TipRefused for a bad one."""
    if session.get(TipRow, tip.id) is not None:
        return None
    text = plain_text(tip.text)
    if not text:
        raise TipRefused("the tip has no text")
    photo = photo_bytes(tip)
    row = TipRow(
        id=tip.id, site=site, community=config.community_of(site), guard=tip.guard, category=tip.category, text=text,
        lat=tip.location.lat if tip.location else None, lon=tip.location.lon if tip.location else None,
        photo=photo, photo_type=tip.photo_type if photo else None, state="new", at=tip.at, received_at=now,
    )
    session.add(row)
    session.add(tip_change(row, now))
    log.info("event=tip_queued id=%s site=%s guard=%s category=%s photo_bytes=%d", tip.id, site, tip.guard, tip.category, len(photo or b""))
    return row


def tip_view(row: TipRow) -> dict[str, Any]:
    """A tip as the API shows it (the photo by its URL)."""
    return {
        "id": row.id, "site": row.site, "community": row.community, "guard": row.guard, "category": row.category, "text": row.text,
        "location": {"lat": row.lat, "lon": row.lon} if row.lat is not None and row.lon is not None else None,
        "photo": f"/api/tips/{row.id}/photo" if row.photo else None, "state": row.state, "decided_by": row.decided_by, "note": row.note,
        "at": row.at.isoformat(), "received_at": row.received_at.isoformat(), "decided_at": row.decided_at.isoformat() if row.decided_at else None,
    }


def tip_change(row: TipRow, now: datetime) -> ChangeRow:
    view = tip_view(row)
    return ChangeRow(at=now, kind=ChangeKind.TIP, key=row.id, payload={k: view[k] for k in ("id", "site", "community", "guard", "category", "state", "text", "photo")})


class Decision(BaseModel):
    """What the police make of a tip."""

    decision: Literal["accept", "reject"]
    note: str = Field(default="", max_length=500)


def tips_router(engine: Engine, config: DistrictConfig, principal: Callable[[Request], Principal]) -> APIRouter:
    """`/api/tips`: the queue, each tip's photo, and accepting or rejecting a tip."""
    router = APIRouter(prefix="/api/tips", tags=["tips"])
    community_sites: dict[str, Collection[str]] = {c.id: c.sites for c in config.communities}
    signed_in = Depends(principal)

    def visible(session: Session, tip_id: str, user: Principal) -> TipRow:
        row = session.get(TipRow, tip_id)
        sites = user.visible_sites(community_sites)
        if row is None or (sites is not None and row.site not in sites):
            raise HTTPException(404, f"no tip {tip_id!r}")
        return row

    @router.get("")
    def queue(
        state: Annotated[list[Literal["new", "accepted", "rejected"]] | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        user: Principal = signed_in,
    ) -> list[dict[str, Any]]:
        """Tips, newest first (`state=new`: the queue)."""
        query = select(TipRow).order_by(TipRow.received_at.desc()).limit(limit)
        if state:
            query = query.where(TipRow.state.in_(state))
        if (sites := user.visible_sites(community_sites)) is not None:
            query = query.where(TipRow.site.in_(list(sites)))
        with Session(engine) as session:
            return [tip_view(r) for r in session.scalars(query)]

    @router.get("/{tip_id}/photo")
    def photo(tip_id: str, user: Principal = signed_in) -> Response:
        """The tip's photo, as the image it was checked to be."""
        with Session(engine) as session:
            row = visible(session, tip_id, user)
            if row.photo is None or row.photo_type is None:
                raise HTTPException(404, "the tip has no photo")
            return Response(row.photo, media_type=row.photo_type, headers={
                "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox", "Cache-Control": "private, max-age=3600",
            })

    @router.post("/{tip_id}/decision")
    def decide(tip_id: str, body: Decision, user: Principal = signed_in) -> dict[str, Any]:
        """Accept or reject a tip from the queue."""
        if not user.can_command:
            raise HTTPException(403, "only dispatchers and community chiefs decide tips")
        now = datetime.now(timezone.utc)
        with Session(engine) as session, session.begin():
            row = visible(session, tip_id, user)
            if row.state != "new":
                raise HTTPException(409, f"the tip was already {row.state} by {row.decided_by}")
            row.state = "accepted" if body.decision == "accept" else "rejected"
            row.decided_by, row.decided_at, row.note = user.name, now, plain_text(body.note) or None
            session.add(tip_change(row, now))
            return tip_view(row)

    return router
