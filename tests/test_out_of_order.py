"""A broker does not keep one device's messages in order across its restart or a client's resend: the edge
escalates every press once whatever the order, and refuses (and counts) real replays, also after a restart."""

from __future__ import annotations

import asyncio
from collections import Counter

from test_containment import publish

from device_drivers import guardlink_wearable
from guardlink import topics
from guardlink.models import Escalation

from conftest import running_edge, wait_until

SITE = "hohhot-no3-primary"
UPLINK = topics.native_device_uplink(SITE, "wear-li")
BOOT = 7


def sos_seqs(recorder) -> Counter[int]:
    """How many escalations (distinct ids) the police saw for each of wear-li's SOS seqs."""
    ids = {(e.incident.device_seq, e.id) for e in map(Escalation.from_json, recorder.payloads()) if e.incident.device == "wear-li"}
    return Counter(seq for seq, _ in ids)


def presses(seqs: list[int], boot: int = BOOT) -> list[tuple[str, bytes]]:
    return [(UPLINK, guardlink_wearable.sos_payload(seq, boot=boot)) for seq in seqs]


async def test_presses_delivered_out_of_order_are_each_escalated_once(school, mosquitto, police_mosquitto, recorder, tmp_path):
    police = recorder(police_mosquitto, topics.police_escalations_filter())
    # As after a broker restore: newer presses first, then the queued older ones, then a resend of some of each.
    order = [*range(15, 20), *range(10, 15), 12, 17, 10]
    async with running_edge(school, mosquitto, police_mosquitto, tmp_path / "outbox.db") as node:
        await asyncio.to_thread(publish, mosquitto, presses(order))
        await wait_until(lambda: set(sos_seqs(police)) == set(range(10, 20)), what="every press at the police")
        await wait_until(lambda: node.intake.rejections.counts[("wear-li", "replayed_seq")] == 3, what="the three copies refused")
    assert sos_seqs(police) == Counter({seq: 1 for seq in range(10, 20)})


async def test_replayed_presses_are_refused_and_counted_also_after_a_restart(school, mosquitto, police_mosquitto, recorder, tmp_path):
    police = recorder(police_mosquitto, topics.police_escalations_filter())
    outbox = tmp_path / "outbox.db"
    async with running_edge(school, mosquitto, police_mosquitto, outbox) as node:
        await asyncio.to_thread(publish, mosquitto, presses(list(range(5))))
        await wait_until(lambda: set(sos_seqs(police)) == set(range(5)), what="the presses at the police")
        await asyncio.to_thread(publish, mosquitto, presses(list(range(5))))  # a replay of every one
        await wait_until(lambda: node.intake.rejections.counts[("wear-li", "replayed_seq")] == 5, what="the replays refused")
        await asyncio.to_thread(publish, mosquitto, presses([9], boot=BOOT - 1))  # from an earlier life
        await wait_until(lambda: node.intake.rejections.counts[("wear-li", "replayed_boot")] == 1, what="the earlier boot refused")
    async with running_edge(school, mosquitto, police_mosquitto, outbox) as node:
        await asyncio.to_thread(publish, mosquitto, presses([*range(5), 5]))  # the old ones again, and a new one
        await wait_until(lambda: 5 in sos_seqs(police), what="the new press at the police")
        await wait_until(lambda: node.intake.rejections.counts[("wear-li", "replayed_seq")] == 5, what="the replays refused after the restart")
    assert sos_seqs(police) == Counter({seq: 1 for seq in range(6)})
