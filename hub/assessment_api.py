"""`GET /api/reports/assessment`: the assessment of a period as JSON, CSV or the self-contained HTML report.

A community chief gets only their communities' sites (and the guards posted or handling incidents there); dispatchers
and viewers the whole district; site accounts nothing. Computed on request, off the event loop.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations.
from collections.abc import Callable, Collection
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.engine import Engine

from guardlink.districtconfig import DistrictConfig
from hub.accounts import Principal, Role
from hub.assessment import PeriodProblem, assess, parse_period
from hub.assessment_report import LANGUAGES, to_csv, to_html


def assessment_router(engine: Engine, config: DistrictConfig, principal: Callable[[Request], Principal]) -> APIRouter:
    """`/api/reports/assessment?period=2026-11[&community=C][&format=json|csv|html][&lang=en|zh-CN]`."""
    router = APIRouter(prefix="/api/reports", tags=["reports"])
    community_sites: dict[str, Collection[str]] = {c.id: c.sites for c in config.communities}

    @router.get("/assessment", response_model=None)
    def assessment(
        user: Annotated[Principal, Depends(principal)],
        period: Annotated[str, Query(description="a month (2026-11) or a year (2026), in the district's time zone")],
        community: Annotated[str | None, Query(description="only this community")] = None,
        format: Annotated[str, Query(pattern="^(json|csv|html)$")] = "json",
        lang: Annotated[str, Query(pattern=f"^({'|'.join(LANGUAGES)})$", description="the HTML report's language (CSV and JSON keep English keys)")] = "en",
    ) -> dict[str, Any] | Response:
        """Per guard, company, site and community: incidents, offer -> accept and accept -> on scene times (median, p90),
        declines, timeouts, false alarms, patrol check-ins on time, tips, training hours, vetting; the weekly trend."""
        if user.role is Role.SITE:
            raise HTTPException(403, "site accounts do not see assessments")
        if community is not None and community not in community_sites:
            raise HTTPException(404, f"no community {community!r} (known: {', '.join(community_sites)})")
        try:
            span = parse_period(period, config.district.timezone)
        except PeriodProblem as exc:
            raise HTTPException(422, str(exc)) from None
        report = assess(engine, config, span, community, user.visible_sites(community_sites))
        if format == "csv":
            return Response(to_csv(report), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": f'attachment; filename="assessment-{span.name}.csv"'})
        if format == "html":
            return HTMLResponse(to_html(report, language=lang))
        doc = asdict(report)
        doc["period"] = {"name": span.name, "start": span.start.isoformat(), "end": span.end.isoformat()}
        return doc

    return router
