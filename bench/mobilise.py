"""`guardlink bench mobilise`: 10,000 guards from 200 simulated sites called up for one event through a real broker.

The hub's event service (hub/events_service.py) on a real mosquitto and an SQLite database holding a register of 10,000
eligible guards of 50 companies posted at 200 sites. An event of 3 sectors needs all of them. Simulated sites (one MQTT
connection, as the sites' edges would answer) take each site's call-ups and answer for its guards: every guard confirms,
then every guard checks in at the sector of their briefing.

- `callup_s`: from defining the event (guards chosen, call-ups stored) until every call-up has reached the sites.
- `headcount_settle_s`: from the last check-in taken by the broker until the headcount the console sees (the event's
  latest `changes` row on the live stream) counts every guard who checked in.
- `headcount_exact`: the stored headcount per sector and role equals the simulation's count, guard for guard.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

GOALS = {"callup_s": 10.0, "headcount_settle_s": 5.0}
DISTRICT = "mobilise"
ROLES = ["patrol", "first_aid", "gate", "mediator", "information_collector", "grid_worker"]
CENTRE = (40.84, 111.75)


# --- a district, a register, an event (also used by tests/test_events.py) -----------------------------------------------


def district(sites: int, communities: int = 10, district_id: str = DISTRICT) -> Any:
    """A district of `communities` squares ~1 km apart around the venue, `sites` sites spread over them."""
    from guardlink.districtconfig import DistrictConfig

    per = -(-sites // communities)
    return DistrictConfig.model_validate({
        "district": {"id": district_id, "name": "Mobilisation bench district"},
        "communities": [
            {"id": f"c{c:02d}", "name": f"Community {c}", "chief": f"Chief {c}", "outline": _square(CENTRE[0] + 0.01 * (c % 5 - 2), CENTRE[1] + 0.012 * (c // 5 - 1), 0.004),
             "sites": [f"site-{s:03d}" for s in range(c * per, min((c + 1) * per, sites))]}
            for c in range(communities)
        ],
    })


def _square(lat: float, lon: float, half: float) -> list[list[float]]:
    return [[lat - half, lon - half], [lat - half, lon + half], [lat + half, lon + half], [lat + half, lon - half]]


def seed_register(engine: Engine, guards: int, companies: int, sites: list[str], today: date, *, ineligible_every: int = 0, seed: int = 1) -> None:
    """`guards` guards (patrol and one more role each) of `companies` companies posted round-robin at `sites`, eligible
    today; with `ineligible_every`, every n-th guard's vetting failed."""
    from hub.register import insert_many
    from hub.register_tables import CompanyRow, RegisteredGuard, TrainingRow

    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    with Session(engine) as session, session.begin():
        insert_many(session, CompanyRow, [{"licence": f"lic-{c:03d}", "name": f"Security Company {c}", "contact": None, "updated_at": now} for c in range(companies)])
        insert_many(session, RegisteredGuard, [
            {"id": f"g-{i:05d}", "name": f"Guard {i}", "company": f"lic-{i % companies:03d}", "phone": None, "id_hash": f"{i:064x}", "id_masked": "1501**********0000",
             "roles": ["patrol", rng.choice(ROLES[1:])], "status": "active",
             "vetting": "failed" if ineligible_every and i % ineligible_every == ineligible_every - 1 else "passed", "vetted_by": "Officer Liu",
             "vetted_on": today - timedelta(days=30), "vetting_until": today + timedelta(days=365), "pre_job_training": True, "assessment_score": None,
             "site": sites[i % len(sites)], "posted_from": today - timedelta(days=10), "wearable": None, "updated_at": now}
            for i in range(guards)
        ])
        insert_many(session, TrainingRow, [{"guard": f"g-{i:05d}", "day": today - timedelta(days=20), "hours": 20.0} for i in range(guards)])


def polygon(lat: float, lon: float, half: float) -> dict[str, Any]:
    """A GeoJSON square ([lon, lat] corners, closed)."""
    corners = [[lon - half, lat - half], [lon + half, lat - half], [lon + half, lat + half], [lon - half, lat + half]]
    return {"type": "Polygon", "coordinates": [corners + [corners[0]]]}


def event_spec(event_id: str, needs: list[dict[str, int]], starts_at: datetime, **options: Any) -> Any:
    """An event at the venue with one square sector per entry of `needs` (sector ids s1, s2, ...), 2 hours long."""
    from hub.events_store import EventSpec

    lat, lon = CENTRE
    return EventSpec.model_validate({
        "id": event_id, "name": "City marathon", "venue": polygon(lat, lon, 0.01), "starts_at": starts_at, "ends_at": starts_at + timedelta(hours=2),
        "briefing": "Report to your sector lead at the tent; high-visibility vest on.",
        "sectors": [{"id": f"s{n + 1}", "name": f"Sector {n + 1}", "area": polygon(lat, lon - 0.006 + 0.006 * n, 0.0025), "needs": need} for n, need in enumerate(needs)],
        **options,
    })


def latest_headcount(engine: Engine, event_id: str) -> dict[str, Any] | None:
    """The event's headcount as the live stream last showed it (its newest `changes` row)."""
    from hub.events_store import CHANGE_KIND
    from hub.tables import ChangeRow

    with Session(engine) as session:
        row = session.scalars(select(ChangeRow).where(ChangeRow.kind == CHANGE_KIND, ChangeRow.key == event_id).order_by(ChangeRow.id.desc()).limit(1)).first()
        return row.payload if row else None


# --- the run ------------------------------------------------------------------------------------------------------------


async def _wait(condition: Callable[[], bool], timeout_s: float, what: str, step_s: float = 0.005) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(step_s)


async def measure(workdir: Path, guards: int = 10_000, sites: int = 200, companies: int = 50) -> dict[str, Any]:
    from bench.servers import running_mosquitto
    from gateway.connection import Client
    from guardlink import topics
    from guardlink.callup import Answer, CallUpAnswers, CallUps, GuardAnswer
    from hub.database import make_engine, migrate
    from hub.events_service import EventService
    from hub.events_store import counts, create_event, fill, record_change

    config = district(sites)
    engine = make_engine(f"sqlite:///{workdir / 'hub.db'}")
    migrate(engine)
    today = datetime.now(timezone.utc).date()
    seed_register(engine, guards, companies, config.sites(), today)
    per_sector = guards // 3
    first_aid = guards // 20
    needs = [{"first_aid": first_aid, "patrol": per_sector - first_aid}, {"first_aid": first_aid, "patrol": per_sector - first_aid},
             {"first_aid": first_aid, "patrol": guards - 2 * per_sector - first_aid}]
    starts = datetime.now(timezone.utc) + timedelta(hours=1)
    spec = event_spec("bench-marathon", needs, starts)
    received: dict[str, tuple[str, str]] = {}  # guard -> (sector, role) of the briefing
    by_site: dict[str, list[str]] = {}
    with running_mosquitto(workdir) as broker:
        service = EventService(config, engine, broker=broker, poll_s=0.02)
        service_task = asyncio.create_task(service.run())
        async with Client(broker, identifier="bench-sites") as sites_client:
            await sites_client.subscribe(topics.police_callups(DISTRICT, "+"), qos=1)
            await asyncio.wait_for(service.ready.wait(), 10)

            async def take() -> None:
                async for message in sites_client.messages:
                    doc = CallUps.model_validate_json(message.payload)
                    for item in doc.items:
                        if item.briefing is not None:
                            received[item.guard] = (item.briefing.sector, item.briefing.role)
                            by_site.setdefault(doc.site, []).append(item.guard)

            taking = asyncio.create_task(take())
            began = time.perf_counter()

            def define() -> int:
                at = datetime.now(timezone.utc)
                with Session(engine) as session, session.begin():
                    event = create_event(session, spec, at, "bench")
                    called = fill(session, config, event, at)
                    record_change(session, event.id, at)
                return called

            called = await asyncio.to_thread(define)
            await _wait(lambda: len(received) >= called, 120, "every call-up at the sites")
            callup_s = time.perf_counter() - began

            async def answer_all(answer: Answer) -> None:
                at = datetime.now(timezone.utc)
                await asyncio.gather(*(
                    sites_client.publish(topics.police_callup_answers(DISTRICT, site), CallUpAnswers(site=site, answers=[
                        GuardAnswer(guard=g, event=spec.id, answer=answer, sector=received[g][0] if answer is Answer.ARRIVED else None, at=at) for g in guards_of
                    ]).to_json(), qos=1)
                    for site, guards_of in by_site.items()
                ))

            await answer_all(Answer.CONFIRM)
            await _wait(lambda: (latest_headcount(engine, spec.id) or {}).get("sectors") is not None and _state_total(engine, spec.id, "confirmed") == called,
                        120, "every confirmation stored", step_s=0.1)
            await answer_all(Answer.ARRIVED)
            checked_in = time.perf_counter()
            await _wait(lambda: (latest_headcount(engine, spec.id) or {}).get("arrived") == called, 120, "the headcount to count every check-in", step_s=0.01)
            settle_s = time.perf_counter() - checked_in
            taking.cancel()
        service_task.cancel()
        await asyncio.gather(service_task, taking, return_exceptions=True)
    simulated = Counter(received.values())
    with Session(engine) as session:
        stored = {(c.sector, c.role): c.arrived for c in counts(session, spec.id)}
    exact = stored == dict(simulated) and sum(stored.values()) == called == guards
    load = os.getloadavg()
    return {
        "guards": guards, "sites": sites, "companies": companies, "called": called, "callup_s": round(callup_s, 3),
        "headcount_settle_s": round(settle_s, 3), "headcount_exact": exact, "load_average": [round(x, 2) for x in load],
        "goals": {"callup_s": f"<= {GOALS['callup_s']:g}", "headcount_settle_s": f"<= {GOALS['headcount_settle_s']:g}", "headcount_exact": True},
        "goals_met": callup_s <= GOALS["callup_s"] and settle_s <= GOALS["headcount_settle_s"] and exact,
    }


def _state_total(engine: Engine, event_id: str, state: str) -> int:
    from hub.events_store import counts

    with Session(engine) as session:
        return sum(c.states.get(state, 0) for c in counts(session, event_id))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="guardlink bench mobilise", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--guards", type=int, default=10_000)
    parser.add_argument("--sites", type=int, default=200)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        figures = asyncio.run(measure(Path(tmp), args.guards, args.sites))
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"{figures['called']} guards of {figures['companies']} companies at {figures['sites']} sites called up for one event of 3 sectors")
        print(f"callup_s            {figures['callup_s']:8.3f}  goal <= {GOALS['callup_s']:g}")
        print(f"headcount_settle_s  {figures['headcount_settle_s']:8.3f}  goal <= {GOALS['headcount_settle_s']:g}")
        print(f"headcount_exact     {figures['headcount_exact']!s:>8}  goal true")
        print(f"load average {figures['load_average']}  goals {'met' if figures['goals_met'] else 'NOT met'}")
    return 0 if figures["goals_met"] else 1
