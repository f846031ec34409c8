"""`guardlink bench dc09`: alarms to an alarm receiving centre over SIA DC-09 (TCP, AES-256), next to a bare socket loop.

Both feed the same receiver (the `pysiaalarm` package's DC-09 receiver, in a process of its own) in the same run:
- edge: wearable SOS presses on the site broker -> `guardlink edge` (decode, rules, dispatch, outbox commit with
  fsync) -> its DC-09 transmitter (reads the outbox, frames, encrypts, waits for each ACK) -> the receiver;
- raw: a bare loop over one socket sending the same kind of frames (built in advance) and reading each ACK, half of
  them right before the edge's burst and half right after.
Presses are first sequential (one in flight: press -> receiver ACK latency), then a burst: `acked_per_s` is the rate of
ACKs from the moment the whole burst is stored in the edge's outbox (seen by the police) to the last ACK, i.e. the
transmitter delivering a backlog inside a running edge; `press_to_last_ack_per_s` spans the whole burst, ingest included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway import dc09

ACCOUNT = "B0A1"
BENCH_KEY = "guardlink-bench-aes-256-key-0032"  # 32 ASCII characters: pysiaalarm takes the key as text, DC-09 as 256 bits
GOAL_RATIO = 0.5
GOAL_ACK_P99_MS = 20.0


@dataclass
class Receiver:
    """A running pysiaalarm receiver: where it listens and what it accepted (valid events, in arrival order)."""

    port: int
    protocol: str
    events: list[Any] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # time.perf_counter() just after each ACK was written
    server: Any = None
    client: Any = None

    @property
    def counts(self) -> Any:
        return self.client.counts

    def silence(self, messages: int) -> None:
        """Answer nothing to the next `messages` messages (as if they were lost on the way)."""
        self.server.drop = messages


@contextlib.asynccontextmanager
async def sia_receiver(protocol: str = "tcp", accounts: dict[str, str | None] | None = None, port: int = 0) -> AsyncIterator[Receiver]:
    """A pysiaalarm DC-09 receiver on a loopback port (free when 0); `accounts` maps account -> key (pysiaalarm text) or None."""
    from pysiaalarm import CommunicationsProtocol, SIAAccount
    from pysiaalarm.aio import SIAClient
    from pysiaalarm.aio.server import SIAServerTCP, SIAServerUDP

    class Silenceable:
        drop = 0

        def parse_and_check_event(self, data: bytes) -> Any:
            if self.drop > 0:
                self.drop -= 1
                return None  # the server answers nothing to a line it could not read
            return super().parse_and_check_event(data)  # type: ignore[misc]

    class Tcp(Silenceable, SIAServerTCP):
        pass

    class Udp(Silenceable, SIAServerUDP):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # pysiaalarm asserts a transport class Python 3.11 no longer uses

    received = Receiver(port=port, protocol=protocol)

    async def accepted(event: Any) -> None:
        received.arrivals.append(time.perf_counter())
        received.events.append(event)

    sia_accounts = [SIAAccount(account, key) for account, key in (accounts or {ACCOUNT: None}).items()]
    client = SIAClient("127.0.0.1", port, sia_accounts, accepted, protocol=CommunicationsProtocol[protocol.upper()])
    received.client = client
    if protocol == "tcp":
        client.sia_server = received.server = Tcp(client._accounts, accepted, client._counts)
        await client.async_start()
        received.port = client.server.sockets[0].getsockname()[1]
        try:
            yield received
        finally:
            await client.async_stop()
    else:
        received.server = Udp(client._accounts, accepted, client._counts)
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(lambda: received.server, local_addr=("127.0.0.1", port))
        received.port = transport.get_extra_info("sockname")[1]
        try:
            yield received
        finally:
            received.server.shutdown_flag = True
            transport.close()


def _serve(port: int, key: str, ready: Any, arrivals: Any) -> None:
    """The receiver process: serves until killed, sends the perf_counter time of each accepted event."""

    async def main() -> None:
        async with sia_receiver("tcp", {ACCOUNT: key}, port) as receiver:
            ready.set()
            sent = 0
            while True:
                await asyncio.sleep(0.002)
                if len(receiver.arrivals) > sent:
                    arrivals.send(receiver.arrivals[sent:])
                    sent = len(receiver.arrivals)

    asyncio.run(main())


class ReceiverProcess:
    """The receiver in a process of its own (its own core), reporting each accepted event's time."""

    def __init__(self, key: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        context = multiprocessing.get_context("spawn")
        self.ready = context.Event()
        self._in, out = context.Pipe(duplex=False)
        self.proc = context.Process(target=_serve, args=(self.port, key, self.ready, out), daemon=True)
        self.proc.start()
        if not self.ready.wait(20):
            raise RuntimeError("the pysiaalarm receiver did not start")
        self.arrivals: list[float] = []

    def wait_count(self, count: int, timeout_s: float) -> float:
        """Time of the `count`-th accepted event (waiting for it)."""
        deadline = time.monotonic() + timeout_s
        while len(self.arrivals) < count:
            if not self._in.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"receiver accepted {len(self.arrivals)} of {count} events within {timeout_s} s")
            self.arrivals += self._in.recv()
        return self.arrivals[count - 1]

    def close(self) -> None:
        self.proc.kill()
        self.proc.join()


def raw_loop(port: int, hex_key: str, count: int) -> float:
    """Send `count` frames (the transmitter's SIA-DCS alarm, AES-256, built beforehand) over one socket, reading each
    answer; returns frames per second."""
    route, now, key = dc09.Route(ACCOUNT, "1", "1"), time.time(), bytes.fromhex(hex_key)
    frames = [dc09.frame("SIA-DCS", dc09.next_sequence(i), route, f"#{ACCOUNT}|Nti12:00/id1/ri1/QA1", now, key) for i in range(count)]
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.perf_counter()
        for message in frames:
            sock.sendall(message)
            answer = b""
            while not answer.endswith(b"\r"):
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError("the receiver closed the connection")
                answer += chunk
            if b"ACK" not in answer:
                raise RuntimeError(f"the receiver did not acknowledge a raw frame: {answer!r}")
        return len(frames) / (time.perf_counter() - start)


def site_yaml(port: int, hex_key: str) -> str:
    """The latency benchmark's site, reporting to one alarm centre."""
    from bench.latency import SITE_YAML

    # No command centre confirms receipt here: without `receipts: false` the edge would resend every revision after 30 s.
    site = SITE_YAML.replace('police: {broker: "mqtt://127.0.0.1:1"}', 'police: {broker: "mqtt://127.0.0.1:1", receipts: false}')
    return site + f"""alarm_centres:
  - {{id: arc, host: 127.0.0.1, port: {port}, protocol: tcp, format: SIA-DCS, account: {ACCOUNT}, line: "1", receiver: "1", key: "{hex_key}", supervision_s: 0}}
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(presses: int = 500, burst: int = 2000, warmup: int = 20) -> dict[str, object]:
    """Measure both paths against one receiver; returns the figures."""
    from bench.latency import Consumer, Presser, _wait_for_log
    from bench.servers import running_mosquitto, stop_process
    from guardlink import topics

    hex_key = BENCH_KEY.encode().hex()
    receiver = ReceiverProcess(BENCH_KEY)
    try:
        with tempfile.TemporaryDirectory(prefix="guardlink-bench-dc09-") as tmp:
            tmp_path = Path(tmp)
            site_file = tmp_path / "site.yaml"
            site_file.write_text(site_yaml(receiver.port, hex_key))
            with running_mosquitto(tmp_path / "site-broker") as site, running_mosquitto(tmp_path / "police-broker") as police:
                edge_log = (tmp_path / "edge.log").open("w")
                edge = subprocess.Popen(
                    [sys.executable, "-m", "cli", "edge", "--config", str(site_file), "--broker", str(site),
                     "--police-broker", str(police), "--outbox", str(tmp_path / "outbox.db")],
                    stdout=subprocess.DEVNULL, stderr=edge_log,
                )
                presser = Presser(site, topics.native_device_uplink("bench-site", "wear-a"))
                police_consumer = Consumer(police, topics.police_escalations("bench", "bench-site"))
                try:
                    _wait_for_log(tmp_path / "edge.log", "event=edge_ready", edge)
                    _wait_for_log(tmp_path / "edge.log", "event=dc09_open", edge)
                    acked = 0
                    latencies: list[float] = []
                    for i in range(warmup + presses):
                        sent = presser.press()
                        acked += 1
                        arrived = receiver.wait_count(acked, 10)
                        if i >= warmup:
                            latencies.append((arrived - sent) * 1000)
                        if (i + 1) % 250 == 0:
                            print(f"  sequential presses: {i + 1}/{warmup + presses}", file=sys.stderr, flush=True)
                    # The bare loop runs half before and half after the edge's burst, as the load of the machine drifts.
                    print(f"measuring a bare socket loop of {burst // 2} frames, the first half", file=sys.stderr, flush=True)
                    raw_before = raw_loop(receiver.port, hex_key, burst // 2)
                    print(f"measuring a burst of {burst} presses", file=sys.stderr, flush=True)
                    police_consumer.wait_count(warmup + presses, 10)
                    stored_before = len(police_consumer.arrivals)
                    first = time.perf_counter()
                    for _ in range(burst):
                        presser.press()
                    # Delivery rate: from the moment the whole burst is stored (the police have it) to the last ACK.
                    stored = police_consumer.wait_count(stored_before + burst, 120)
                    last = receiver.wait_count(acked + burst, 300)
                    after_stored = [t for t in receiver.arrivals[acked:acked + burst] if t > stored]
                    if len(after_stored) < burst // 4:
                        raise RuntimeError(f"only {len(after_stored)} of {burst} ACKs came after the burst was stored: use a larger --burst")
                    acked_per_s = len(after_stored) / (last - stored)
                    press_to_last_per_s = burst / (last - first)
                    acked += burst
                    retries = (tmp_path / "edge.log").read_text().count("event=dc09_retry")
                finally:
                    police_consumer.close()
                    presser.close()
                    stop_process(edge)
                    edge_log.close()
        print(f"measuring a bare socket loop of {burst // 2} frames, the second half", file=sys.stderr, flush=True)
        raw_after = raw_loop(receiver.port, hex_key, burst // 2)
        raw_per_s = 2 / (1 / raw_before + 1 / raw_after)  # the same number of frames before and after the edge's burst
    finally:
        receiver.close()
    p99 = percentile(latencies, 0.99)
    ratio = acked_per_s / raw_per_s
    return {
        "transport": "tcp",
        "encryption": "AES-256",
        "format": "SIA-DCS",
        "presses": presses,
        "ack_p50_ms": round(statistics.median(latencies), 3),
        "ack_p99_ms": round(p99, 3),
        "ack_max_ms": round(max(latencies), 3),
        "burst": burst,
        "acked_per_s": round(acked_per_s, 1),
        "press_to_last_ack_per_s": round(press_to_last_per_s, 1),
        "raw_per_s": round(raw_per_s, 1),
        "retries": retries,  # messages the transmitter had to send again (silence or NAK)
        "ratio": round(ratio, 3),
        "outbox_fsync": True,
        "goal_ratio": GOAL_RATIO,
        "goal_ack_p99_ms": GOAL_ACK_P99_MS,
        "goal_met": ratio >= GOAL_RATIO and p99 <= GOAL_ACK_P99_MS,
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point of `guardlink bench dc09`."""
    parser = argparse.ArgumentParser(prog="guardlink bench dc09", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--presses", type=int, default=500, help="sequential presses for the latency (default 500)")
    parser.add_argument("--burst", type=int, default=2000, help="presses in the throughput burst, and raw frames (default 2000)")
    args = parser.parse_args(argv)
    try:
        import pysiaalarm  # noqa: F401
    except ImportError:
        print("guardlink bench dc09 needs the pysiaalarm receiver: pip install -e '.[test]'", file=sys.stderr)
        return 2
    result = run(presses=args.presses, burst=args.burst)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"press -> receiver ACK (TCP, AES-256): p50 {result['ack_p50_ms']:.3f} ms, p99 {result['ack_p99_ms']:.3f} ms, "
              f"max {result['ack_max_ms']:.3f} ms (goal p99 <= {GOAL_ACK_P99_MS:g} ms)")
        print(f"acknowledged alarms/s: edge {result['acked_per_s']:.1f}, bare socket loop {result['raw_per_s']:.1f}, "
              f"ratio {result['ratio']:.3f} (goal >= {GOAL_RATIO})")
        print("goal met" if result["goal_met"] else "goal NOT met")
    return 0
