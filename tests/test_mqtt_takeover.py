"""Two connections with one client id push each other off the broker: the adapter says so at ERROR level, with
the client id, once per report window however often it happens."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.connection import Client, stay_connected
from guardlink.siteconfig import BrokerUrl

from conftest import wait_until


async def _hold(client: Client) -> None:
    async for _ in client.messages:
        pass


async def test_a_client_id_taken_by_another_connection_is_an_error_once_per_window(mosquitto: BrokerUrl, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.connection")
    fighters = [asyncio.create_task(stay_connected(mosquitto, _hold, identifier="guardlink-edge-twin", max_backoff_s=0.2)) for _ in range(2)]
    try:
        await wait_until(lambda: any(r.levelno == logging.ERROR for r in caplog.records), 15, "the ERROR about the taken client id")
        losses = sum("event=mqtt_disconnected" in r.getMessage() for r in caplog.records)
        await wait_until(lambda: sum("event=mqtt_disconnected" in r.getMessage() for r in caplog.records) >= losses + 10, 15, "more takeovers")
    finally:
        for task in fighters:
            task.cancel()
        await asyncio.gather(*fighters, return_exceptions=True)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) <= 2, errors  # at most one per process in the window, though the takeovers went on
    assert "event=mqtt_client_id_taken" in errors[0] and "client=guardlink-edge-twin" in errors[0] and "stop the other one" in errors[0]


async def test_a_single_connection_that_reconnects_is_not_reported(mosquitto: BrokerUrl, caplog: pytest.LogCaptureFixture) -> None:
    async def short(client: Client) -> None:
        await client.publish("t", b"x", qos=1)

    for _ in range(4):
        await stay_connected(mosquitto, short, identifier="guardlink-edge-alone")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
