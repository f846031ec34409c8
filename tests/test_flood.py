"""A device flooding the site broker at 5,000 messages a second does not delay a panic press from another device."""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from bench.latency import Consumer
from device_drivers.simulators import SiteSimulator
from guardlink import topics
from guardlink.siteconfig import BrokerUrl

from conftest import running_edge, wait_until

FLOOD_RATE = 5000
FLOOD_S = 4.0
PRESSES = 5


async def press_latencies_s(sim: SiteSimulator, police: Consumer, device: str, count: int) -> list[float]:
    """Press `count` times, one at a time; each press's time from publishing to the police consumer."""
    latencies = []
    for _ in range(count):
        before = len(police.arrivals)
        sent = time.perf_counter()
        await asyncio.to_thread(sim.press, device)
        arrived = await asyncio.to_thread(police.wait_count, before + 1, 10)
        latencies.append(arrived - sent)
    return latencies


def start_flood(broker: BrokerUrl, topic: str) -> subprocess.Popen:
    flood = subprocess.Popen(
        [sys.executable, "-m", "bench.flood", str(broker), topic, str(FLOOD_RATE), str(FLOOD_S)], stdout=subprocess.PIPE, text=True
    )
    assert flood.stdout.readline().strip() == "ready"
    return flood


@pytest.fixture
def edge_switch_interval() -> Iterator[None]:
    """The GIL switch interval `guardlink edge` runs with: the edge here shares its process with paho threads."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    yield
    sys.setswitchinterval(before)


async def test_a_flooding_device_does_not_delay_a_panic_press_from_another(school, mosquitto, tmp_path, edge_switch_interval):
    police = Consumer(mosquitto, topics.police_escalations_filter())
    try:
        async with running_edge(school, mosquitto, mosquitto, tmp_path / "outbox.db") as node:
            with SiteSimulator(school, mosquitto, seed=3) as sim:
                await asyncio.to_thread(sim.report_positions)
                quiet = await press_latencies_s(sim, police, "btn-gate", PRESSES)

                flood = start_flood(mosquitto, "zigbee2mqtt/btn-hall")
                try:
                    limited = ("btn-hall", "rate_limited")
                    await wait_until(lambda: node.intake.rejections.counts[limited] > 500, timeout_s=5, what="the flood to reach the edge")
                    flooded = await press_latencies_s(sim, police, "btn-gate", PRESSES)
                    cut_while_pressing = node.intake.rejections.counts[limited]
                    output, _ = await asyncio.to_thread(flood.communicate, timeout=FLOOD_S + 10)
                finally:
                    flood.kill()
                sent, took = output.split()[1], output.split()[3]
                await wait_until(lambda: node.intake.rejections.counts[limited] + node.intake.messages >= int(sent), timeout_s=10,
                                 what="the edge to take the whole flood")
    finally:
        police.close()

    rate = int(sent) / float(took)
    print(f"flood {rate:.0f} msg/s; press -> police without flood {[round(x * 1000, 1) for x in quiet]} ms, "
          f"with flood {[round(x * 1000, 1) for x in flooded]} ms")
    assert rate >= 0.9 * FLOOD_RATE, "the flood must really run at 5k msg/s for this test to mean anything"
    assert cut_while_pressing > 500, "the presses must have competed with the flood"
    assert max(flooded) < 1.0, "every press during the flood reaches the police within a second"
    assert statistics.median(flooded) <= statistics.median(quiet) + 0.1, "a flood costs a press at most 100 ms"
    assert node.incidents == 2 * PRESSES, "the flood raised nothing, every press one escalation"
