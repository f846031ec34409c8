"""Hotspots: the methods beat the naive baseline on the shipped synthetic history, bad CSV rows are reported with their
positions, the EM fit finds the near-repeat rate it was generated with, and the CLI and the console's map layer work."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from guardlink.districtconfig import DistrictConfig
from hub.hotspots.evaluate import replay
from hub.hotspots.forecast import grid_for
from hub.hotspots.grid import Grid
from hub.hotspots.hawkes import fit, near_pairs
from hub.hotspots.methods import History
from hub.hotspots.records import read_csv, write_csv
from hub.hotspots.synth import Spec, synthesize

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "firmware_configs" / "hotspots" / "synthetic-xincheng-180d.csv"


def guardlink(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=REPO, capture_output=True, text=True, timeout=110)


def test_the_methods_beat_the_baseline_on_the_shipped_synthetic_history():
    incidents, problems = read_csv(SHIPPED)
    assert not problems and len(incidents) > 3000
    _, figures = replay(incidents, grid_for(incidents, None, 150.0), 8.0, time.perf_counter())
    baseline = figures["baseline_pai_5pct"]
    assert figures["kde_pai_5pct"] > baseline and figures["hawkes_pai_5pct"] > baseline
    assert figures["pai_gain_5pct"] >= 1.5, figures
    assert figures["methods"]["hawkes"]["hit_rate_5pct"] > figures["baseline"]["hit_rate_5pct"]


def test_bad_csv_rows_are_reported_with_file_row_and_column(tmp_path):
    path = tmp_path / "police.csv"
    path.write_text(
        "id,time,lat,lon,category\n"
        "1,2025-03-01T21:05:00+08:00,40.85,111.76,theft\n"
        "2,yesterday,40.85,111.76,theft\n"
        "3,2025-03-01 22:00,95.2,111.76,dispute\n"
        "4,2025-03-02 01:00,40.85,east,fraud\n"
        "5,2025-03-02 02:00,0,0,burglary\n"
        "6,2025-03-02 03:00\n"
        "7,2025-03-02 04:00,40.86,111.77,\n",
        encoding="utf-8",
    )
    incidents, problems = read_csv(path)
    assert problems == [
        f"{path}:3:2: time 'yesterday' is not ISO 8601 (e.g. 2025-03-01T21:05:00+08:00 or 2025-03-01 21:05)",
        f"{path}:4:3: lat 95.2 is out of range (-90..90)",
        f"{path}:5:4: lon 'east' is not a number of degrees",
        f"{path}:6:3: lat, lon 0, 0 is a missing geocode, not a place",
        f"{path}:7:3: the row has 2 fields, the header 5",
    ]
    assert len(incidents) == 2 and list(incidents.category) == ["theft", "unspecified"]
    assert incidents.zone == "+08:00", "times without an offset follow the file's first offset"
    assert read_csv(tmp_path / "missing.csv")[1][0].startswith(f"{tmp_path / 'missing.csv'}: cannot read")
    (tmp_path / "header.csv").write_text("when,lat,lon\n2025-03-01,1,2\n", encoding="utf-8")
    assert read_csv(tmp_path / "header.csv")[1] == [f"{tmp_path / 'header.csv'}:1:1: missing columns time, category (the header has: when, lat, lon)"]

    refused = guardlink("hotspots", "evaluate", "--data", str(path))
    assert refused.returncode == 1 and f"{path}:3:2: time 'yesterday'" in refused.stderr and f"{path}:7:3:" in refused.stderr
    skipped = guardlink("hotspots", "show", "--data", str(path), "--skip-bad-rows", "--at", "2025-03-02T06:00:00+08:00", "--geojson")
    assert skipped.returncode == 0, skipped.stderr
    assert f"{path}:4:3: lat 95.2 is out of range (-90..90) (skipped)" in skipped.stderr
    assert json.loads(skipped.stdout)["properties"]["incidents"] == 2


def test_the_em_fit_finds_the_near_repeat_rate_it_was_generated_with():
    incidents, _ = synthesize(Spec(days=120, per_day=40, side_m=6000, follow_up_days=2.0, seed=7))
    history = History.of(incidents, Grid.covering(incidents.lat, incidents.lon, 150.0))
    fitted = fit(history, near_pairs(history, 21.0, 64), float(history.t[-1]), 60)
    assert 0.3 < fitted.omega < 0.8, fitted.omega  # generated: 1 / 2 days
    assert 0.1 < fitted.theta < 0.45, fitted.theta  # generated 0.45, of which the share staying in the 150 m cell
    assert ((fitted.p_background >= 0) & (fitted.p_background <= 1)).all()


def test_synth_writes_a_history_that_reads_back_the_same(tmp_path):
    out = tmp_path / "synth.csv"
    done = guardlink("hotspots", "synth", "--out", str(out), "--days", "20", "--seed", "3")
    assert done.returncode == 0 and "key hours" in done.stderr
    incidents, problems = read_csv(out)
    generated, _ = synthesize(Spec(days=20, seed=3))
    assert not problems and len(incidents) == len(generated)
    assert abs(incidents.t - generated.t).max() < 1e-9 and abs(incidents.lat - generated.lat).max() < 1e-6
    write_csv(tmp_path / "again.csv", incidents)
    assert (tmp_path / "again.csv").read_text() == out.read_text()


def test_show_lists_the_top_cells_where_the_history_clusters(tmp_path):
    shown = guardlink("hotspots", "show", "--data", str(SHIPPED), "--at", "2025-06-29T20:00:00+08:00", "--hours", "4", "--top", "5")
    assert shown.returncode == 0, shown.stderr
    assert "top cells (150 m) for the 4 h from 2025-06-29T20:00+08:00, by hawkes" in shown.stdout
    assert len([line for line in shown.stdout.splitlines() if line.strip()[:1].isdigit()]) == 5


def test_the_map_layer_shows_each_user_the_hotspots_of_their_communities(tmp_path):
    from fastapi.testclient import TestClient
    from sqlalchemy.orm import Session

    from bench.hub import revision
    from guardlink.models import Location
    from hub.accounts import Accounts, Role
    from hub.api import create_app
    from hub.database import make_engine, migrate
    from hub.store import Revision, store

    config = DistrictConfig.model_validate({
        "district": {"id": "hotdist", "name": "Hotspot district", "timezone": "Asia/Shanghai"},
        "communities": [
            {"id": "north", "name": "North", "chief": "N", "outline": [[40.05, 111.0], [40.1, 111.0], [40.1, 111.1]], "sites": ["n-school"]},
            {"id": "south", "name": "South", "chief": "S", "outline": [[40.0, 111.0], [40.05, 111.0], [40.05, 111.1]], "sites": ["s-factory"]},
        ],
        "hotspots": {"cell_m": 200},
    })
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    migrate(engine)
    accounts = Accounts(engine, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    accounts.add_user("disp", Role.DISPATCHER, communities=[], password="pw-disp-long")
    accounts.add_user("south_chief", Role.CHIEF, communities=["south"], password="pw-chief-long")
    now = datetime.now(timezone.utc)
    items = []
    for i, (site, community, lat, lon) in enumerate([("n-school", "north", 40.08, 111.05)] * 12 + [("s-factory", "south", 40.02, 111.03)] * 4):
        esc = revision(site, f"esc-{i}", 1, 1, at=(now - timedelta(days=i % 6, hours=1)).timestamp())
        esc = esc.model_copy(update={"incident": esc.incident.model_copy(update={"location": Location(lat=lat, lon=lon)})})
        items.append(Revision(esc, community, now))
    with Session(engine) as db, db.begin():
        store(db, items, now)

    async def publish(site: str, command: object) -> None:
        raise AssertionError("no commands here")

    app = create_app(engine=engine, config=config, publish_command=publish, accounts=accounts)
    with TestClient(app) as client:
        assert client.get("/api/hotspots").status_code == 401
        assert client.post("/api/login", json={"name": "disp", "password": "pw-disp-long"}).status_code == 200
        layer = client.get("/api/hotspots", params={"hours": 4, "top": 3}).json()
        assert layer["type"] == "FeatureCollection" and layer["properties"]["cell_m"] == 200 and layer["properties"]["incidents"] == 16
        first = layer["features"][0]["properties"]
        assert first["rank"] == 1 and first["centre"] == pytest.approx([40.08, 111.05], abs=0.003), "the north school is the hottest"
        assert client.get("/api/hotspots", params={"hours": 0}).status_code == 422
        client.post("/api/logout")
        client.cookies.clear()
        assert client.post("/api/login", json={"name": "south_chief", "password": "pw-chief-long"}).status_code == 200
        south = client.get("/api/hotspots").json()
        assert south["properties"]["incidents"] == 4
        assert all(f["properties"]["centre"][0] < 40.05 for f in south["features"]), "a chief sees only their communities"
