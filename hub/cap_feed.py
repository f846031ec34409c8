"""CAP 1.2 from the command centre: the open alerts as an Atom feed, and each incident's CAP alert (any revision).

Same rules as the rest of the API: a session or a bearer token, and a chief sees only their communities' sites.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Collection, Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from gateway import cap
from guardlink.districtconfig import DistrictConfig
from guardlink.models import Escalation, EscalationStatus
from hub.accounts import Principal
from hub.tables import EscalationRow, RevisionRow

ATOM_NS = "http://www.w3.org/2005/Atom"
ATOM_MEDIA_TYPE = "application/atom+xml"
FEED_LIMIT = 500
OPEN = [s.value for s in EscalationStatus if not s.final]
ET.register_namespace("", ATOM_NS)  # the feed's own elements unprefixed; CAP inside it as cap:


def cap_router(engine: Engine, config: DistrictConfig, principal: Callable[[Request], Principal]) -> APIRouter:
    """`GET /api/cap/alerts.atom` (open incidents, newest first) and `GET /api/cap/alerts/{incident}.xml[?revision=N]`."""
    router = APIRouter(prefix="/api/cap", tags=["cap"])
    community_sites: dict[str, Collection[str]] = {c.id: c.sites for c in config.communities}
    signed_in = Depends(principal)

    def revisions(db: Session, incident_id: str, user: Principal) -> list[Escalation]:
        row = db.get(EscalationRow, incident_id)
        sites = user.visible_sites(community_sites)
        if row is None or (sites is not None and row.site not in sites):
            raise HTTPException(404, f"no incident {incident_id!r}")
        # Annotated: SQLAlchemy leaves a select of a JSON column untyped.
        docs: Iterable[dict[str, Any]] = db.scalars(select(RevisionRow.document).where(RevisionRow.escalation_id == incident_id).order_by(RevisionRow.revision))
        return [Escalation.model_validate(doc) for doc in docs]

    @router.get("/alerts/{incident_id}.xml", response_class=Response, responses={200: {"content": {cap.CAP_MEDIA_TYPE: {}}}, 404: {}})
    def alert(incident_id: str, revision: Annotated[int | None, Query(ge=1, description="default: the latest")] = None, user: Principal = signed_in) -> Response:
        """One incident's CAP 1.2 alert: its latest revision (or `revision`), referencing the earlier ones."""
        with Session(engine) as db:
            history = revisions(db, incident_id, user)
        chosen = [e for e in history if revision is None or e.revision == revision]
        if not chosen:
            raise HTTPException(404, f"incident {incident_id!r} has no revision {revision}")
        return Response(cap.render(chosen[-1], history), media_type=cap.CAP_MEDIA_TYPE)

    @router.get("/alerts.atom", response_class=Response, responses={200: {"content": {ATOM_MEDIA_TYPE: {}}}})
    def feed(request: Request, user: Principal = signed_in) -> Response:
        """The open incidents (not resolved, false alarm or closed), newest first, each entry its latest CAP alert."""
        query = select(EscalationRow).where(EscalationRow.status.in_(OPEN))
        sites = user.visible_sites(community_sites)
        if sites is not None:
            query = query.where(EscalationRow.site.in_(sites))
        with Session(engine) as db:
            rows = list(db.scalars(query.order_by(EscalationRow.issued_at.desc(), EscalationRow.id).limit(FEED_LIMIT)))
            histories = [revisions(db, row.id, user) for row in rows]
        base = str(request.base_url).rstrip("/")
        return Response(atom(config, histories, base, str(request.url)), media_type=ATOM_MEDIA_TYPE)

    return router


def atom(config: DistrictConfig, histories: list[list[Escalation]], base: str, self_url: str) -> bytes:
    """An Atom feed with one entry per escalation (its latest revision), the CAP alert inline and linked."""
    root = ET.Element(f"{{{ATOM_NS}}}feed")
    _text(root, "id", f"urn:guardlink:{config.district.id}:cap")
    _text(root, "title", f"guardlink open alerts: {config.district.name}")
    latest = [history[-1] for history in histories if history]
    _text(root, "updated", max((cap.cap_time(e.issued_at) for e in latest), default="1970-01-01T00:00:00+00:00"))
    ET.SubElement(root, f"{{{ATOM_NS}}}link", rel="self", href=self_url, type=ATOM_MEDIA_TYPE)
    _text(ET.SubElement(root, f"{{{ATOM_NS}}}author"), "name", f"guardlink command centre {config.district.id}")
    for history in histories:
        if not history:
            continue
        escalation = history[-1]
        entry = ET.SubElement(root, f"{{{ATOM_NS}}}entry")
        _text(entry, "id", cap.identifier(escalation))
        _text(entry, "title", cap.headline(escalation))
        _text(entry, "updated", cap.cap_time(escalation.issued_at))
        ET.SubElement(entry, f"{{{ATOM_NS}}}link", rel="alternate", type=cap.CAP_MEDIA_TYPE, href=f"{base}/api/cap/alerts/{escalation.id}.xml")
        content = ET.SubElement(entry, f"{{{ATOM_NS}}}content", type=cap.CAP_MEDIA_TYPE)
        content.append(cap.alert(escalation, history))
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _text(parent: ET.Element, tag: str, text: str) -> None:
    ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}").text = text
