"""Every MQTT connection guardlink opens sends small packets at once (TCP_NODELAY): Nagle's algorithm would hold an
acknowledgement or a receipt back until the previous packet's TCP ACK, which the peer may delay by up to 40 ms."""

from __future__ import annotations

import socket

from gateway.connection import Client, threaded_client

from conftest import wait_until


def nodelay(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


async def test_the_asyncio_client_sets_tcp_nodelay(mosquitto) -> None:
    async with Client(mosquitto, identifier="nodelay-test") as client:
        assert nodelay(client._paho.socket()) == 1


async def test_a_threaded_client_sets_tcp_nodelay(mosquitto) -> None:
    client = threaded_client(mosquitto)
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    try:
        await wait_until(client.is_connected, what="the threaded client connected")
        assert nodelay(client.socket()) == 1
    finally:
        client.disconnect()
        client.loop_stop()
