"""An installer setting up a site from the printed instructions: broker accounts that survive a second run, a broker
that starts as printed (also as root), the edge's password kept out of the command line, and where templates come from."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from bench.servers import _wait_listening, mosquitto_binary, stop_process
from edge.broker_access import read_credentials
from edge.embedded_broker import free_tcp_port

from conftest import GUARDLINK, REPO, SCHOOL


def broker_config(out: Path, port: int, *more: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*GUARDLINK, "broker-config", str(SCHOOL), "--out", str(out), "--bind", "127.0.0.1", "--port", str(port), *more],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def reachable_dir() -> Iterator[Path]:
    """A directory any user can enter, as /etc/mosquitto is (pytest's own temporary directories are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="guardlink-broker-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def connects(port: int, user: str, password: str) -> bool:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.username_pw_set(user, password)
    try:
        client.connect("127.0.0.1", port)
        client.loop_start()
        return client.publish("guardlink/hohhot-no3-primary/edge/status", b"{}", qos=1).wait_for_publish(10) or True
    except (OSError, RuntimeError):
        return False
    finally:
        client.disconnect()
        client.loop_stop()


def test_the_printed_start_command_works_and_the_edge_password_comes_from_a_file(reachable_dir):
    port, out = free_tcp_port(), reachable_dir / "broker"
    printed = broker_config(out, port).stderr
    start = next(line for line in printed.splitlines() if line.startswith("start the broker:")).split(":", 1)[1].split()
    assert start[0] == "mosquitto" and "Traceback" not in printed
    proc = subprocess.Popen([mosquitto_binary(), *start[1:]], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_listening(proc, port, 10), proc.stderr.read() if proc.poll() is not None else "not listening"
        edge_url = next(line for line in printed.splitlines() if line.startswith("run the edge with:"))
        assert f"password_file={out}/edge.password" in edge_url and read_credentials(out / "credentials.txt")["edge"] not in edge_url
        assert (out / "edge.password").stat().st_mode & 0o077 == 0
        assert connects(port, "edge", (out / "edge.password").read_text().strip())
    finally:
        stop_process(proc)


def test_a_second_run_keeps_every_password_unless_told_to_rotate_one(tmp_path):
    out = tmp_path / "broker"
    broker_config(out, 1883)
    first = read_credentials(out / "credentials.txt")
    again = broker_config(out, 1883)
    assert read_credentials(out / "credentials.txt") == first, "devices already set up keep working"
    assert f"{len(first)} kept their password, 0 new" in again.stderr
    broker_config(out, 1883, "--rotate", "wear-li")
    rotated = read_credentials(out / "credentials.txt")
    assert rotated["wear-li"] != first["wear-li"] and {k: v for k, v in rotated.items() if k != "wear-li"} == {
        k: v for k, v in first.items() if k != "wear-li"
    }


@pytest.mark.skipif(os.geteuid() != 0, reason="mosquitto drops to its own user only when started as root")
def test_an_output_directory_mosquitto_cannot_enter_is_pointed_out(tmp_path):
    printed = broker_config(tmp_path / "broker", 1883).stderr
    assert "warning: mosquitto drops to user 'mosquitto', which cannot enter" in printed


def test_a_copied_site_file_says_where_templates_were_looked_for(tmp_path):
    site = tmp_path / "sites" / "school.yaml"
    site.parent.mkdir()
    shutil.copy(SCHOOL, site)
    result = subprocess.run([*GUARDLINK, "config", "validate", str(site)], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 1
    assert f"looked in {tmp_path / 'templates'}, which does not exist" in result.stdout + result.stderr


def test_the_influxdb_token_can_come_from_a_file(tmp_path):
    from gateway.telemetry import settings_from_environment

    (tmp_path / "influx.token").write_text("s3cret-token\n")
    env = {"GUARDLINK_INFLUX_URL": "http://influx:8086", "GUARDLINK_INFLUX_TOKEN_FILE": str(tmp_path / "influx.token")}
    assert settings_from_environment(None, env).token == "s3cret-token"
    from guardlink.siteconfig import ConfigError

    with pytest.raises(ConfigError, match="GUARDLINK_INFLUX_TOKEN_FILE: cannot read"):
        settings_from_environment(None, env | {"GUARDLINK_INFLUX_TOKEN_FILE": str(tmp_path / "missing")})


def test_the_systemd_unit_runs_a_valid_edge_command_with_no_secret_on_it():
    from cli.main import parser

    systemd = REPO / "firmware_configs" / "systemd"
    env = dict(line.split("=", 1) for line in (systemd / "edge.env.example").read_text().splitlines() if line and not line.startswith("#"))
    [exec_start] = [line.split("=", 1)[1] for line in (systemd / "guardlink-edge.service").read_text().splitlines() if line.startswith("ExecStart=")]
    argv = exec_start.split()
    assert argv[0].endswith("/guardlink")
    args = parser().parse_args([env.get(a[2:-1], a) if a.startswith("${") else a for a in argv[1:]])
    assert args.command == "edge" and args.broker.password_file and args.police_broker.password_file and args.broker.password is None
    assert "password=" not in exec_start and "TOKEN=" not in (systemd / "edge.env.example").read_text().replace("#", "")
