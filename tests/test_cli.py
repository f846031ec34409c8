"""The documented commands, run as a user runs them: separate processes against real brokers."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import jsonschema

from edge.embedded_broker import free_tcp_port

from conftest import GUARDLINK, REPO, SCHOOL, stop_process

COMMITTED_SCHEMA = json.loads((REPO / "guardlink" / "schemas" / "escalation.schema.json").read_text())


def test_demo_json_prints_valid_escalations_and_exits_zero():
    result = subprocess.run(
        [*GUARDLINK, "demo", "--duration", "4", "--press-every", "0.8", "--json", "--seed", "2"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines, f"no escalation printed; stderr:\n{result.stderr}"
    for line in lines:
        doc = json.loads(line)
        jsonschema.validate(doc, COMMITTED_SCHEMA)
        assert doc["schema"] == "guardlink.escalation/1"
    assert len({(json.loads(line)["id"], json.loads(line)["revision"]) for line in lines}) == len(lines), "each revision once"
    assert "summary:" in result.stderr


def test_the_demos_escalations_reach_its_command_centre_and_are_confirmed(tmp_path):
    port = free_tcp_port()
    demo = subprocess.Popen(
        [*GUARDLINK, "demo", "--duration", "12", "--press-every", "1", "--json", "--seed", "5", "--hub-listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )
    try:
        banner = read_lines_until(demo.stderr, lambda line: "command centre http://" in line, timeout_s=60)
        assert banner and f"http://127.0.0.1:{port}/console/" in banner[-1], banner
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as hub:
            assert hub.post("/api/login", json={"name": "demo", "password": "demo-dispatcher"}).status_code == 200
            deadline = time.monotonic() + 30
            while (total := hub.get("/api/incidents").json()["total"]) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert total >= 2, "the demo's presses are stored at the command centre"
        out, err = demo.communicate(timeout=60)
    finally:
        stop_process(demo)
    assert demo.returncode == 0, err
    assert "the command centre confirmed" in err


def read_lines_until(stream, predicate: Callable[[str], bool], timeout_s: float) -> list[str]:
    """Read lines from a process stream in a thread until one matches or the time is up."""
    lines: list[str] = []
    found = threading.Event()

    def pump() -> None:
        for line in stream:
            lines.append(line)
            if predicate(line):
                found.set()
                return

    threading.Thread(target=pump, daemon=True).start()
    found.wait(timeout_s)
    return lines


def test_edge_police_watch_and_simulate_commands_work_together(mosquitto, police_mosquitto, spawn, recorder, tmp_path):
    status = recorder(mosquitto, "guardlink/+/edge/status")
    edge = spawn(
        "edge", "--config", str(SCHOOL), "--broker", str(mosquitto), "--police-broker", str(police_mosquitto),
        "--outbox", str(tmp_path / "outbox.db"),
    )
    watch = spawn("police", "watch", "--broker", str(police_mosquitto), "--json")
    # The edge announces itself (retained) once subscribed; the watcher says where it listens.
    read_lines_until(watch.stderr, lambda line: line.startswith("watching"), 20)
    deadline = time.monotonic() + 20
    while b'{"state": "online"}' not in status.payloads() and time.monotonic() < deadline and edge.poll() is None:
        time.sleep(0.02)
    assert b'{"state": "online"}' in status.payloads(), edge.stderr.read() if edge.poll() is not None else "edge not ready"

    press = subprocess.run(
        [*GUARDLINK, "simulate", "--site", str(SCHOOL), "--broker", str(mosquitto), "--press", "btn-hall", "--seed", "4"],
        capture_output=True, text=True, timeout=30, cwd=REPO,
    )
    assert press.returncode == 0, press.stderr
    lines = read_lines_until(watch.stdout, lambda line: line.strip().startswith("{"), 20)
    docs = [json.loads(line) for line in lines if line.strip().startswith("{")]
    if not docs:
        stop_process(edge)
        raise AssertionError(f"police watch printed no escalation; edge log:\n{edge.stderr.read()}")
    jsonschema.validate(docs[0], COMMITTED_SCHEMA)
    assert docs[0]["incident"]["device"] == "btn-hall"
    assert docs[0]["assignments"], "the simulator reported positions first, so a guard must be assigned"


def test_edge_refuses_a_broken_site_file_with_file_line_col(tmp_path: Path):
    shutil.copytree(SCHOOL.parent.parent / "templates", tmp_path / "templates")
    (tmp_path / "sites").mkdir()
    bad = tmp_path / "sites" / "school.yaml"
    bad.write_text(SCHOOL.read_text().replace("template: aqara-wxkg11lm\n    location: {lat: 40.84172", "template: aqara-wxkg11\n    location: {lat: 40.84172"))
    result = subprocess.run([*GUARDLINK, "edge", "--config", str(bad)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    line_no = next(i for i, line in enumerate(bad.read_text().splitlines(), 1) if "aqara-wxkg11\n" in line + "\n")
    known = ", ".join(sorted(p.stem for p in (tmp_path / "templates").glob("*.yaml")))
    assert result.stderr.splitlines() == [f"{bad}:{line_no}:15: device 'btn-hall' uses unknown template 'aqara-wxkg11' (known: {known}; looked in {tmp_path / 'templates'})"]


def test_schema_command_prints_the_committed_schema():
    result = subprocess.run([*GUARDLINK, "schema", "escalation"], capture_output=True, text=True, timeout=30)
    assert json.loads(result.stdout) == COMMITTED_SCHEMA, "schema drifted: run `make schemas` and commit"
