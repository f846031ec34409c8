"""Real servers on free loopback ports for benchmarks and tests: mosquitto, always stopped afterwards."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge.embedded_broker import free_tcp_port
from guardlink.siteconfig import BrokerUrl

DURABILITY_CONF = Path(__file__).resolve().parent.parent / "firmware_configs" / "mosquitto" / "conf.d" / "durability.conf"


def mosquitto_binary() -> str:
    """Path of the mosquitto binary; RuntimeError saying how to install it when missing."""
    found = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None)
    if not found:
        raise RuntimeError("mosquitto is not installed: run `make test` (it installs it) or `apt-get install mosquitto`")
    return found


@contextmanager
def running_mosquitto(workdir: Path, port: int | None = None, *, durable: bool = False) -> Iterator[BrokerUrl]:
    """A mosquitto process on `port` (a free loopback port when None); always stopped afterwards.

    `durable` uses the site configuration guardlink ships (firmware_configs/mosquitto/conf.d/durability.conf)
    with its database in `workdir`, so a broker restarted on the same workdir keeps sessions and queues.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    attempts = 3 if port is None else 1
    for attempt in range(attempts):
        port = port if attempts == 1 else free_tcp_port()
        conf = workdir / f"mosquitto-{port}.conf"
        log_path = workdir / f"mosquitto-{port}.log"
        settings = f"listener {port} 127.0.0.1\nallow_anonymous true\n"
        if os.geteuid() == 0:
            settings += "user root\n"  # else mosquitto drops to its own user, which cannot enter private tmp dirs
        if durable:
            settings += f"persistence_location {workdir}/\n{DURABILITY_CONF.read_text()}"
        else:
            settings += "persistence false\nmax_queued_messages 0\n"
        conf.write_text(settings)
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=log_file, stderr=subprocess.STDOUT)
        try:
            if _wait_listening(proc, port, timeout_s=10):
                yield BrokerUrl(host="127.0.0.1", port=port)
                return
        finally:
            stop_process(proc)
        if attempt == attempts - 1:
            raise RuntimeError(f"mosquitto did not start: {log_path.read_text(errors='replace')}")


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate a process, killing it if it does not exit within 5 s."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_listening(proc: subprocess.Popen, port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False  # e.g. the port was taken between choosing and binding it
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False
