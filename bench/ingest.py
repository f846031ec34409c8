"""`guardlink bench ingest`: device events decoded and evaluated by the edge, next to a raw paho subscriber.

Both drain the same backlog from the same mosquitto in the same run, one after the other:
- a site of N simulated devices of every family (`guardlink simulate --devices N`) is loaded, and the edge's
  persistent session and the raw subscriber's are registered on the broker (same topic filters, QoS 1);
- M everyday device messages (statuses, telemetry, positions, motion summaries, sensor states; each one
  event) are published and acknowledged by the broker, which queues them for both sessions;
- raw: a bare paho client connects and receives them (no decoding; paho acknowledges each);
- edge: the edge node connects and takes each through intake (rate limit, decode, replay check), rules,
  supervision, guard board and wearable watch, acknowledging each afterwards (manual ack in receipt order, as in production).
Rates are counted from the first message received to the last; the whole is done `--rounds` times (the
medians are reported, as a shared machine's load varies). No alarm is among the messages: what alarms cost
(the fsync'd outbox) is `guardlink bench latency`'s subject. Both use paho's public API only: the raw client its
own network thread, the edge paho's external-loop calls on its asyncio loop (gateway/connection.py), reading
every packet that has arrived in one wake-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.servers import running_mosquitto
from device_drivers.simulators import SiteSimulator, with_simulated_devices
from edge.node import EdgeNode
from gateway.connection import PahoClient, PahoMessage, threaded_client
from guardlink.siteconfig import BrokerUrl, SiteConfig, parse_site

SITE_YAML = """
site: {id: bench-site, name: Ingest benchmark, district: bench, location: {lat: 40.8421, lon: 111.7512}}
police: {broker: "mqtt://127.0.0.1:1"}
devices:
  - {id: wear-a, driver: guardlink_wearable}
  - {id: phone-b, driver: owntracks}
guards:
  - {id: g-a, name: Guard A, wearable: wear-a}
  - {id: g-b, name: Guard B, wearable: phone-b}
"""
GOAL = 0.5


class RawSubscriber:
    """A bare paho client with a persistent session: the broker queues for it while it is away."""

    def __init__(self, broker: BrokerUrl, filters: list[str]) -> None:
        self.broker = broker
        self.filters = filters
        self.count = 0
        self.first = self.last = 0.0
        self._target = 0
        self._done = threading.Event()
        self._ready = threading.Event()
        self._client = threaded_client(broker, client_id="bench-ingest-raw", clean_session=False)
        self._client.on_connect = self._connected
        self._client.on_subscribe = lambda c, u, mid, rcs, p: self._ready.set()
        self._client.on_message = self._received

    def _connected(self, client: PahoClient, userdata: object, flags: object, reason: object, props: object) -> None:
        client.subscribe([(f, 1) for f in self.filters])

    def _received(self, client: PahoClient, userdata: object, message: PahoMessage) -> None:
        now = time.perf_counter()
        if self.count == 0:
            self.first = now
        self.count += 1
        self.last = now
        if self.count >= self._target:
            self._done.set()

    def register(self) -> None:
        """Subscribe once and leave: from now on the broker queues for this session."""
        self._client.connect(self.broker.host, self.broker.port)
        self._client.loop_start()
        if not self._ready.wait(10):
            raise RuntimeError("raw subscriber could not subscribe")
        self._client.disconnect()
        self._client.loop_stop()

    def drain(self, expected: int, timeout_s: float) -> float:
        """Connect, receive `expected` messages; returns messages/s."""
        self._target, self.count = expected, 0
        self._done.clear()
        self._client.connect(self.broker.host, self.broker.port)
        self._client.loop_start()
        try:
            if not self._done.wait(timeout_s):
                raise TimeoutError(f"raw subscriber got {self.count} of {expected} messages in {timeout_s} s")
        finally:
            self._client.disconnect()
            self._client.loop_stop()
        return (self.count - 1) / (self.last - self.first)


def publish_backlog(config: SiteConfig, broker: BrokerUrl, messages: int, seed: int) -> None:
    """Every device in turn sends everyday traffic until `messages` are acknowledged by the broker."""
    with SiteSimulator(config, broker, seed=seed) as simulator:
        for n in range(messages):
            simulator.report(config.devices[n % len(config.devices)])
        simulator.wait_published(timeout_s=120)


async def drain_edge(node: EdgeNode, expected: int, timeout_s: float) -> tuple[float, float]:
    """Run the edge until it has evaluated `expected` messages; returns (messages/s, events/s)."""
    intake = node.intake
    run = asyncio.create_task(node.run())
    first = last = 0.0
    first_count = 0
    deadline = time.monotonic() + timeout_s
    try:
        while intake.messages < expected:
            if run.done():
                run.result()
            if time.monotonic() > deadline:
                raise TimeoutError(f"edge evaluated {intake.messages} of {expected} messages in {timeout_s} s")
            if not first and intake.messages:
                first, first_count = time.perf_counter(), intake.messages
            await asyncio.sleep(0.002)
        last = time.perf_counter()
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
    counted = intake.messages - first_count
    return counted / (last - first), counted * intake.events / intake.messages / (last - first)


async def register_edge(node: EdgeNode) -> None:
    """Start the edge once so its persistent session and subscriptions exist, then stop it."""
    run = asyncio.create_task(node.run())
    try:
        await asyncio.wait_for(node.ready.wait(), 15)
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)


def run(messages: int = 50_000, devices: int = 200, rounds: int = 3, seed: int = 1) -> dict[str, object]:
    """Measure both, `rounds` times in turn on the same broker; returns the medians and every round's figures."""
    config = with_simulated_devices(parse_site(SITE_YAML, "bench-site.yaml"), devices)
    raw_rates, edge_rates, ratios = [], [], []
    with tempfile.TemporaryDirectory(prefix="guardlink-bench-") as tmp:
        tmp_path = Path(tmp)
        with running_mosquitto(tmp_path / "site") as site, running_mosquitto(tmp_path / "police") as police:

            def edge_node() -> EdgeNode:
                return EdgeNode(config, site_broker=site, police_broker=police, outbox_path=tmp_path / "outbox.db")

            node = edge_node()
            asyncio.run(register_edge(node))
            raw = RawSubscriber(site, node.intake.filters)
            raw.register()
            for round_ in range(1, rounds + 1):
                print(f"round {round_}/{rounds}: {messages} messages from {len(config.devices)} devices", file=sys.stderr, flush=True)
                publish_backlog(config, site, messages, seed + round_)
                raw_rates.append(raw.drain(messages, timeout_s=120))
                node = edge_node()
                _, edge_events_per_s = asyncio.run(drain_edge(node, messages, timeout_s=300))
                edge_rates.append(edge_events_per_s)
                ratios.append(edge_events_per_s / raw_rates[-1])
                if node.intake.rejections.total or node.intake.events != node.intake.messages:
                    raise RuntimeError(f"the edge did not take every message as one event: {dict(node.intake.rejections.counts)}")
    ratio = statistics.median(ratios)
    return {
        "messages": messages,
        "rounds": rounds,
        "devices": len(config.devices),
        "families": sorted({d.driver for d in config.devices}),
        "raw_per_s": round(statistics.median(raw_rates)),
        "edge_events_per_s": round(statistics.median(edge_rates)),
        "ratio_vs_raw": round(ratio, 3),
        "rounds_raw_per_s": [round(r) for r in raw_rates],
        "rounds_edge_events_per_s": [round(r) for r in edge_rates],
        "rounds_ratio": [round(r, 3) for r in ratios],
        "goal_ratio": GOAL,
        "goal_met": ratio >= GOAL,
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point of `guardlink bench ingest`."""
    parser = argparse.ArgumentParser(prog="guardlink bench ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--messages", type=int, default=50_000, help="messages in each round's backlog (default 50000)")
    parser.add_argument("--devices", type=int, default=200, help="simulated devices, every family in turn (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="raw then edge, this many times; medians are reported (default 3)")
    args = parser.parse_args(argv)
    logging.getLogger("edge").setLevel(logging.ERROR)  # the edge's per-message info logs are not what is measured
    logging.getLogger("gateway").setLevel(logging.ERROR)  # nor its reconnects when each round's edge is stopped
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # aiomqtt re-registers a closed socket while it is cancelled
    result = run(messages=args.messages, devices=args.devices, rounds=args.rounds)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{'receiver (median of ' + str(result['rounds']) + ' rounds)':<44}{'per s':>10}   rounds")
        print(f"{'raw paho subscriber (receive only)':<44}{result['raw_per_s']:>10}   {result['rounds_raw_per_s']}")
        print(f"{'edge (decode, rules, supervision, ack)':<44}{result['edge_events_per_s']:>10}   {result['rounds_edge_events_per_s']}")
        print(f"edge / raw: {result['ratio_vs_raw']} {result['rounds_ratio']}   goal >= {GOAL}: {'met' if result['goal_met'] else 'NOT met'}"
              f"   ({result['messages']} messages a round, {result['devices']} devices of {len(result['families'])} families, one event each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
