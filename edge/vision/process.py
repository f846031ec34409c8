"""A camera's worker process as the edge's event loop sees it: it starts `python -m edge.vision.worker`, turns its
JSON lines into events and evidence, sends it evidence requests, and starts it again if it dies.

Nothing here touches frames: the edge process stays free of OpenCV and of per-frame work.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.vision.events import CameraEvent
from guardlink.cameraconfig import CameraSettings
from guardlink.models import Evidence
from guardlink.siteconfig import BrokerUrl

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0
STABLE_S = 10.0  # a worker (or a stream, inside it) that ran this long is retried without waiting longer
PASSWORD_ENV = "GUARDLINK_CAMERA_BROKER_PASSWORD"


class CameraProcess:
    """A camera's worker process as the edge's event loop sees it: events in, evidence requests out."""

    def __init__(
        self,
        camera: CameraSettings,
        *,
        on_event: Callable[[CameraEvent], None],
        on_evidence: Callable[[str, Evidence], None],
        broker: BrokerUrl | None = None,
        evidence_dir: Path | None = None,
    ) -> None:
        self.camera = camera
        self.on_event = on_event
        self.on_evidence = on_evidence
        # The broker's password never goes on the worker's command line (`ps` shows it): an inline one by environment.
        self.env = {**os.environ, PASSWORD_ENV: broker.password} if broker and broker.password is not None else None
        if broker is not None and broker.password is not None:
            broker = broker.model_copy(update={"password": None, "password_env": PASSWORD_ENV})
        self.config = json.dumps(
            {"camera": camera.model_dump(mode="json", include=set(CameraSettings.model_fields)),  # a site's Camera knows more
             "broker": broker.model_dump(mode="json") if broker else None,
             "evidence_dir": str(evidence_dir) if evidence_dir else None, "log_level": logging.getLevelName(log.getEffectiveLevel())}
        )
        self.stats: dict[str, Any] = {}
        self.on_stats: Callable[[str, dict[str, Any]], None] | None = None  # each stats report, as it comes (the monitor)
        self.starts = 0
        self._process: asyncio.subprocess.Process | None = None

    async def run(self) -> None:
        """Keep the worker running until cancelled; a worker that dies is started again after a pause."""
        delay = RETRY_FIRST_S
        try:
            while True:
                started = time.monotonic()
                self._process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "edge.vision.worker", self.config, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                    limit=1 << 20, env=self.env,
                )
                self.starts += 1
                assert self._process.stdout is not None  # started with stdout=PIPE
                async for line in self._process.stdout:
                    self._received(line)
                code = await self._process.wait()
                log.error("event=camera_worker_exited camera=%s code=%s restart_in_s=%.1f", self.camera.id, code, delay)
                if time.monotonic() - started >= STABLE_S:
                    delay = RETRY_FIRST_S
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        finally:
            await self._stop()

    def request_evidence(self, ref: str, t: float, box: tuple[float, float, float, float] | None) -> None:
        """Ask the worker for a snapshot and a clip of the event at `t` for incident `ref`."""
        if self._process is not None and self._process.returncode is None and self._process.stdin is not None:
            request = {"evidence": {"ref": ref, "time": t, "box": list(box) if box else None}}
            self._process.stdin.write((json.dumps(request) + "\n").encode())

    def _received(self, line: bytes) -> None:
        try:
            message = json.loads(line)
            if "event" in message:
                self.on_event(CameraEvent.from_dict(message["event"]))
            elif "evidence" in message:
                self.on_evidence(message["evidence"]["ref"], Evidence.model_validate(message["evidence"]["file"]))
            elif "stats" in message:
                self.stats = message["stats"]
                if self.on_stats is not None:
                    self.on_stats(self.camera.id, self.stats)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("event=camera_worker_bad_line camera=%s error=%r line=%r", self.camera.id, str(exc), line[:200])
        except Exception:  # a bug in a handler must not take the camera (and the edge's task group) down
            log.exception("event=camera_event_handler_failed camera=%s line=%r", self.camera.id, line[:200])

    async def _stop(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
