"""What a newcomer meets first: `make demo`, `guardlink demo` and `guardlink simulate`, mistakes included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from device_drivers.simulators import GuardHabits, SiteSimulator
from edge.embedded_broker import free_tcp_port
from guardlink.siteconfig import BrokerUrl

from conftest import GUARDLINK, REPO, SCHOOL


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*GUARDLINK, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


def test_simulated_guards_answer_like_people_and_reach_the_scene_within_seconds(school):
    sim = SiteSimulator(school, BrokerUrl(host="127.0.0.1", port=1), seed=5, habits=GuardHabits())  # never connected
    replies: Counter[str] = Counter()
    sim._reply = lambda guard, answer, escalation: replies.update([answer])
    far = {"lat": 40.8460, "lon": 111.7512}  # 430 m north of the site's centre
    for n in range(400):
        sim.walkers["wear-li"].target = sim.walkers["wear-li"].job = sim.walkers["wear-li"].fallen_since = None
        sim._offered("g-li", {"escalation": f"e{n}", "state": "offered", "location": far})
        for action in sim._agenda:
            action.run()
        sim._agenda.clear()
    assert replies["accept"] >= 0.8 * 400 and 0.05 * 400 <= replies["decline"] <= 0.2 * 400, replies
    assert 400 - replies["accept"] - replies["decline"] <= 0.05 * 400, "hardly anyone lets an offer time out"
    walker, ticks = sim.walkers["wear-li"], 0
    while walker.target is not None and ticks < 60:
        sim.report_positions(elapsed_s=1.0)  # one second of the demo's timeline
        ticks += 1
    assert ticks <= 8, f"a 430 m walk took {ticks} s of demo time: guards would be busy for most of the demo"


def test_the_demo_terminal_shows_alarm_lines_only_and_counts_in_good_grammar(tmp_path):
    result = run("demo", "--duration", "3", "--press-every", "4", "--seed", "4", "--site", str(SCHOOL))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("guardlink demo:") and "logs in " in lines[0]
    assert lines[1].startswith("guardlink demo: command centre http://") and "log in as demo" in lines[1]
    assert all(" rev " in line for line in lines[2:-1]), "no log line between the alarm lines"
    assert lines[-1].startswith("summary: 1 press, 1 incident and "), lines[-1]
    assert " WARNING " not in result.stdout and " WARNING " not in result.stderr


@pytest.mark.parametrize("args, error", [
    (["--press-every", "0"], "--press-every: 0 must be a positive number"),
    (["--duration", "-5"], "--duration: -5 must be a positive number"),
    (["--press-every", "nan"], "--press-every: nan must be a positive number"),
])
def test_the_demo_refuses_settings_that_make_no_sense(args, error):
    result = run("demo", *args, timeout=30)
    assert result.returncode == 2 and error in result.stderr, result.stderr


@pytest.mark.parametrize("args, code, message", [
    (["--press", "btn-nope"], 2, "'btn-nope' is not a button or wearable of site hohhot-no3-primary (pressable: btn-gate,"),
    (["--press", "btn-gate", "--action", "bogus"], 2, "'btn-gate' (zigbee2mqtt) cannot send 'bogus' (it can:"),
    (["--press", "btn-gate", "--broker", "mqtt://127.0.0.1:{free}"], 1, "cannot reach the site broker mqtt://127.0.0.1:"),
    (["--duration", "1", "--broker", "mqtt://127.0.0.1:{free}"], 1, "cannot reach the site broker"),
    (["--duration", "-5"], 2, "--duration: -5 must be a positive number"),
])
def test_simulate_mistakes_get_a_message_and_an_exit_code_not_a_traceback(args, code, message):
    result = run("simulate", "--site", str(SCHOOL), *[a.format(free=free_tcp_port()) for a in args], timeout=30)
    assert (result.returncode, "Traceback" in result.stderr) == (code, False), result.stderr
    assert message in result.stderr, result.stderr


def test_simulate_says_when_a_press_is_no_alarm(mosquitto):
    result = run("simulate", "--site", str(SCHOOL), "--broker", str(mosquitto), "--press", "btn-gate", "--action", "quadruple")
    assert result.returncode == 0 and "not an alarm action of btn-gate" in result.stderr, result.stderr


def _interrupted(command: list[str], after_s: float) -> subprocess.CompletedProcess:
    """Run a command in its own process group and press Ctrl-C (SIGINT to the group) after `after_s`."""
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal, even under a test runner
    )
    time.sleep(after_s)  # the point is a Ctrl-C at this moment, whatever the process is doing
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(command, proc.returncode, out, "")


# From the moment guardlink's own code runs (before that, Python itself is still starting and prints its own
# KeyboardInterrupt: nothing of ours runs yet to catch it, which takes ~50 ms on a quiet machine and more when loaded).
@pytest.mark.parametrize("after_s", [0.3, 0.6, 1.0])
def test_ctrl_c_while_guardlink_starts_ends_quietly(after_s):
    result = _interrupted([*GUARDLINK, "simulate", "--site", str(SCHOOL), "--broker", "mqtt://127.0.0.1:1"], after_s)
    assert "Traceback" not in result.stdout, result.stdout


def test_ctrl_c_on_make_demo_is_no_make_error(tmp_path: Path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    guardlink = venv / "bin" / "guardlink"
    guardlink.write_text(f"#!/bin/sh\nexec {sys.executable} -m cli \"$@\"\n")
    guardlink.chmod(0o755)
    (venv / ".demo-installed").touch()  # installed: make goes straight to the demo
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "demo", f"VENV={venv}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=REPO, start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    banner = proc.stdout.readline()
    assert banner.startswith("guardlink demo:"), banner
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert "make: ***" not in out and "Traceback" not in out, out


def test_vision_analyze_takes_a_stream_url_as_it_is():
    url = f"rtsp://127.0.0.1:{free_tcp_port()}/stream1"
    result = run("vision", "analyze", url, timeout=60)
    assert result.returncode == 1 and "no such file" not in result.stderr and f"could not read '{url}'" in result.stderr, result.stderr
