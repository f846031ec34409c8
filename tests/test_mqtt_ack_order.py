"""PUBACKs leave in the order their messages arrived (MQTT 3.1.1 [MQTT-4.6.0-2]), even when a later message is
handled first: checked by a small MQTT broker written here on a raw socket, which records every PUBACK."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from device_drivers import guardlink_wearable
from gateway.connection import Client
from guardlink import topics
from guardlink.siteconfig import BrokerUrl, parse_site

from conftest import running_edge, wait_until

SITE = """
site: {id: ack-site, name: Ack order, district: d1, location: {lat: 40.8421, lon: 111.7512}}
police: {broker: "mqtt://127.0.0.1:1"}
devices:
  - {id: wear-a, driver: guardlink_wearable}
  - {id: wear-b, driver: guardlink_wearable}
guards:
  - {id: g-a, name: Guard A, wearable: wear-a}
  - {id: g-b, name: Guard B, wearable: wear-b}
"""


class RecordingBroker:
    """Just enough of an MQTT 3.1.1 broker for one client: accepts it, grants its subscriptions, acknowledges its
    publications, sends it what `deliver` is given (QoS 1) and records the packet ids of the PUBACKs it sends back."""

    def __init__(self) -> None:
        self.pubacks: list[int] = []
        self.subscribed = asyncio.Event()
        self._writers: dict[str, asyncio.StreamWriter] = {}  # by client id, in connection order
        self._next_id = 0

    async def deliver(self, topic: str, payload: bytes, client: str | None = None) -> int:
        """Send a QoS 1 PUBLISH to `client` (the first client that connected when None); returns its packet id."""
        writer = self._writers[client] if client else next(iter(self._writers.values()))
        self._next_id += 1
        name = topic.encode()
        body = struct.pack("!H", len(name)) + name + struct.pack("!H", self._next_id) + payload
        writer.write(bytes([0x32]) + _length(len(body)) + body)
        await writer.drain()
        return self._next_id

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                kind, body = await _read_packet(reader)
                if kind == 0x10:  # CONNECT: protocol name, level, flags, keep-alive, then the client id
                    at = 2 + struct.unpack_from("!H", body, 0)[0] + 4
                    self._writers[body[at + 2 : at + 2 + struct.unpack_from("!H", body, at)[0]].decode()] = writer
                    writer.write(b"\x20\x02\x00\x00")
                elif kind == 0x80:  # SUBSCRIBE: grant QoS 1 to each filter
                    count, at = 0, 2
                    while at < len(body):
                        at += 2 + struct.unpack_from("!H", body, at)[0] + 1
                        count += 1
                    writer.write(bytes([0x90]) + _length(2 + count) + body[:2] + b"\x01" * count)
                    self.subscribed.set()
                elif kind == 0x30:  # PUBLISH from the client: acknowledge QoS 1
                    flags, (length,) = body[-1], struct.unpack_from("!H", body, 0)
                    if (flags >> 1) & 3:
                        writer.write(b"\x40\x02" + body[2 + length : 4 + length])
                elif kind == 0x40:  # PUBACK from the client
                    self.pubacks.append(struct.unpack("!H", body)[0])
                elif kind == 0xC0:  # PINGREQ
                    writer.write(b"\xd0\x00")
                elif kind == 0xE0:  # DISCONNECT
                    return
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


async def _read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    body = await reader.readexactly(length)
    if first & 0xF0 == 0x30:
        body += bytes([first & 0x0F])  # a PUBLISH's flags, for the handler
    return first & 0xF0, body


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@asynccontextmanager
async def recording_broker() -> AsyncIterator[tuple[RecordingBroker, BrokerUrl]]:
    broker = RecordingBroker()
    server = await asyncio.start_server(broker.serve, "127.0.0.1", 0)
    try:
        yield broker, BrokerUrl(host="127.0.0.1", port=server.sockets[0].getsockname()[1])
    finally:
        server.close()


async def test_acknowledgements_leave_in_receipt_order_when_later_messages_are_handled_first() -> None:
    async with recording_broker() as (broker, url), Client(url, identifier="ack-order", clean_session=False, manual_ack=True) as client:
        await client.subscribe("t/#", qos=1)
        for n in range(1, 4):
            await broker.deliver(f"t/{n}", b"x")
        received = []
        async for message in client.messages:
            received.append(message)
            if len(received) == 3:
                break
        assert [m.mid for m in received] == [1, 2, 3] and not any(m.dup for m in received)
        client.ack(received[2])
        client.ack(received[1])
        await asyncio.sleep(0.05)  # time for a wrongly early PUBACK to arrive: nothing may have gone
        assert broker.pubacks == []
        client.ack(received[0])
        await wait_until(lambda: len(broker.pubacks) == 3, 5, "the three PUBACKs")
        assert broker.pubacks == [1, 2, 3]


async def test_the_edge_acknowledges_a_position_after_the_alarm_that_came_before_it(police_mosquitto: BrokerUrl, tmp_path: Path) -> None:
    """The SOS is acknowledged after its fsync; the position right behind it may not overtake it."""
    config = parse_site(SITE, "site.yaml")
    async with recording_broker() as (broker, url), running_edge(config, url, police_mosquitto, tmp_path / "outbox.db") as node:
        edge = "guardlink-edge-ack-site"  # the edge's site session (the edge opens other connections to the site broker too)
        alarm = await broker.deliver(topics.native_device_uplink("ack-site", "wear-a"), guardlink_wearable.sos_payload(1), edge)
        plain = await broker.deliver(topics.native_device_uplink("ack-site", "wear-b"), guardlink_wearable.battery_payload(1, 80), edge)
        await wait_until(lambda: len(broker.pubacks) >= 2, 10, "both PUBACKs")
        assert broker.pubacks == [alarm, plain]
        assert node.incidents == 1
