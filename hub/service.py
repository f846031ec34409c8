"""The running command centre: intake, liveness checks and the HTTP API in one asyncio loop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import uvicorn
from sqlalchemy import Engine

from guardlink import topics
from guardlink.districtconfig import DistrictConfig
from guardlink.models import PoliceCommand
from guardlink.siteconfig import BrokerUrl, parse_listen
from hub.database import make_engine, migrate
from hub.events_service import EventService
from hub.field import FieldLink
from hub.forwarding import Forwarding
from hub.intake import Intake
from hub.leader import DistrictLock, while_leader
from hub.metrics import hub_metrics
from hub.register_publisher import roster_service

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)


class CommandsNotSent(Exception):
    """The hub is not connected to the district broker: the command could not go out."""


def command_publisher(intake: Intake) -> Callable[[str, PoliceCommand], Awaitable[None]]:
    """`publish_command(site, command)` for the API: QoS 1 on the site's commands topic, over the intake's connection."""

    async def publish_command(site: str, command: PoliceCommand) -> None:
        client = intake.client
        if client is None:
            raise CommandsNotSent("the hub is not connected to the district broker; try again in a moment")
        payload = command.model_dump_json(by_alias=True, exclude_none=True)
        await client.publish(topics.police_commands(intake.district, site), payload, qos=1)
        log.info("event=command_sent site=%s command=%s escalation=%s by=%s", site, command.command.value, command.escalation, command.by)

    return publish_command


def app_for(engine: Engine, config: DistrictConfig, intake: Intake, metrics: Callable[[], bytes] | None = None) -> FastAPI:
    """The ASGI app: hub.api's, over the same engine, publishing commands through the intake and woken by its commits."""
    from hub.api import create_app

    return create_app(engine=engine, config=config, publish_command=command_publisher(intake), notify=intake.notify, metrics=metrics)


def make_intake(config: DistrictConfig, engine: Engine, broker: BrokerUrl | str | None, on_commit: Callable[[Any], None] | None = None) -> Intake:
    """A hub worker on a NATS cluster for `nats://host:port[,...]` (from `broker`, else the district file), else the one MQTT broker's intake."""
    url = broker if broker is not None else (config.broker if config.broker.startswith("nats://") else None)
    if isinstance(url, str):
        from hub.intake_nats import NatsIntake, parse_servers

        return NatsIntake(config, engine, servers=parse_servers(url), on_commit=on_commit)
    return Intake(config, engine, broker=url, on_commit=on_commit)


async def keep_running(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """`run()` again after it fails (the database restarting, a defect), logged with its traceback, after 1 s doubling to
    30 s (back to 1 s once it ran a minute): one service's failure neither stops the hub nor ends that service for good."""
    delay = 1.0
    while True:
        started = time.monotonic()
        try:
            await run()
            return
        except Exception:
            if time.monotonic() - started >= 60:
                delay = 1.0
            log.exception("event=service_failed service=%s retry_in_s=%.0f", name, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)


def district_links(
    config: DistrictConfig, engine: Engine, broker: BrokerUrl | str | None, intake: Intake,
) -> tuple[Coroutine[Any, Any, None] | None, DistrictLock | None]:
    """The hub's MQTT work besides the intake: patrol tasks out and field reports in (hub/field.py), event call-ups
    (hub/events_service.py) and site rosters (hub/register_publisher.py). With one MQTT district broker, over the intake's
    broker (rosters on the intake's connection). On a NATS cluster, over the cluster's MQTT listener named by the district
    file's `broker`, in one worker at a time (hub/leader.py): every worker would otherwise publish every task and roster
    and take every field report. Returns what to run (None: nothing) and the lock it runs under (None: no lock)."""
    on_nats = str(broker or config.broker).startswith("nats://")
    if not on_nats:
        mqtt = broker if isinstance(broker, BrokerUrl) else config.broker_url()
    elif "broker" in config.model_fields_set and not config.broker.startswith("nats://"):
        mqtt = config.broker_url()
    else:
        log.warning("event=hub_field_links_off reason=%r", "tasks, field reports, event call-ups and rosters need the cluster's MQTT listener: "
                    "set the district file's broker to it (mqtt://host:1883)")
        return None, None
    field = FieldLink(config, engine, mqtt)
    events = EventService(config, engine, broker=mqtt, notify=intake.notify)
    rosters = roster_service(config, engine, (lambda: field.client) if on_nats else (lambda: intake.client))

    async def run() -> None:
        log.info("event=district_links_started broker=%s rosters=%s", mqtt, "on" if rosters is not None else "off")
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(keep_running("field", field.run))
            tasks.create_task(keep_running("events", events.run))
            if rosters is not None:
                tasks.create_task(keep_running("rosters", rosters.run))

    if not on_nats:
        return run(), None
    lock = DistrictLock(engine, config.district.id, "links")
    return while_leader(lock, run, standby_reason="another hub worker runs the district's MQTT links"), lock


async def serve(
    config: DistrictConfig,
    *,
    database: str | None = None,
    listen: str | None = None,
    broker: BrokerUrl | str | None = None,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Run the hub until cancelled (or until the HTTP server is told to stop by a signal)."""
    url = database or config.database_url()
    engine = make_engine(url)
    await asyncio.to_thread(migrate, engine)
    forwarding = Forwarding(config, engine) if config.alarm_centres else None  # to alarm receiving centres, by one worker (hub/forwarding.py)
    intake = make_intake(config, engine, broker, on_commit=forwarding.committed if forwarding else None)
    links, links_lock = district_links(config, engine, broker, intake)  # tasks and field reports, call-ups, rosters: MQTT to the district broker
    host, port = parse_listen(listen or config.listen)
    app = app_for(engine, config, intake, hub_metrics(intake, forwarding, links_lock))
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on",
                                           timeout_graceful_shutdown=2))  # an open live stream must not hold up a stop
    intake_task = asyncio.create_task(intake.run(), name="intake")
    links_task = asyncio.create_task(links, name="district-links") if links is not None else None
    serving = asyncio.create_task(server.serve(), name="http")
    forwarding_task = asyncio.create_task(forwarding.run(), name="forwarding") if forwarding is not None else None
    try:
        while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn offers no event for "started"
            await asyncio.sleep(0.02)
        if server.started:
            bound = server.servers[0].sockets[0].getsockname()
            address = f"http://{bound[0]}:{bound[1]}"
            log.info("event=hub_listening url=%s database=%s broker=%s", address, engine.url.render_as_string(hide_password=True), intake.broker)
            if on_listening:
                on_listening(address)
        watched = {serving, intake_task, *(task for task in (forwarding_task, links_task) if task is not None)}
        done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # an intake, link or server that stopped by itself says why
    finally:
        server.should_exit = True  # a graceful stop: open streams end, the lifespan finishes, no traceback
        with suppress(asyncio.CancelledError, asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(serving), timeout=5)
        intake_task.cancel()
        if links_task is not None:
            links_task.cancel()
        if forwarding_task is not None:
            forwarding_task.cancel()
            with suppress(asyncio.CancelledError):
                await forwarding_task  # its cursors are saved on the way out
        with suppress(asyncio.CancelledError):
            await intake_task
        engine.dispose()
