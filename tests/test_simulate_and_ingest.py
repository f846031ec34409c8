"""`guardlink simulate --devices N --rate R` drives a site of every family; `guardlink bench ingest --json` reports its figures."""

from __future__ import annotations

import asyncio
import json
import subprocess

from device_drivers.registry import DRIVERS
from guardlink.siteconfig import load_site

from conftest import GUARDLINK, REPO, SCHOOL, running_edge, wait_until


async def test_simulate_load_run_of_every_family_is_taken_by_the_edge(mosquitto, tmp_path):
    site_out = tmp_path / "load.yaml"
    written = await asyncio.to_thread(
        subprocess.run,
        [*GUARDLINK, "simulate", "--site", str(SCHOOL), "--broker", str(mosquitto), "--devices", "40", "--duration", "0",
         "--site-out", str(site_out)],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
    )
    assert written.returncode == 0, written.stderr
    config = load_site(site_out, DRIVERS.keys())
    assert len(config.devices) == 40 and {d.driver for d in config.devices} == set(DRIVERS)
    async with running_edge(config, mosquitto, mosquitto, tmp_path / "outbox.db") as node:
        run = await asyncio.create_subprocess_exec(
            *GUARDLINK, "simulate", "--site", str(site_out), "--broker", str(mosquitto), "--devices", "40", "--rate", "500",
            "--duration", "2", "--press-every", "0.5", "--seed", "3", cwd=REPO, stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(run.communicate(), 30)
        assert run.returncode == 0, stderr.decode()
        sent, presses = int(stderr.split()[0]), int(stderr.split()[5])
        await wait_until(lambda: node.intake.messages >= sent + presses, what="every simulated message taken")
    assert 900 <= sent <= 1010, "500 messages a second for 2 s"
    assert presses == 3 and node.incidents == presses
    assert node.intake.rejections.total == 0
    # Everyday messages are one event each, a Zigbee press two, and a Zigbee sensor report also states its tamper switch.
    assert node.intake.events >= node.intake.messages


def test_bench_ingest_json_reports_edge_and_raw_rates():
    result = subprocess.run(
        [*GUARDLINK, "bench", "ingest", "--json", "--messages", "3000", "--devices", "40", "--rounds", "1"],
        capture_output=True, text=True, timeout=120, cwd=REPO, check=False,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["edge_events_per_s"] > 0 and figures["raw_per_s"] > 0
    assert figures["ratio_vs_raw"] == round(figures["edge_events_per_s"] / figures["raw_per_s"], 3) or abs(
        figures["ratio_vs_raw"] - figures["edge_events_per_s"] / figures["raw_per_s"]) < 0.01
    assert figures["families"] == sorted(DRIVERS)
