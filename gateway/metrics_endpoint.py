"""A Prometheus `/metrics` endpoint on the node's own asyncio loop: no thread, no web framework.

Scrapes are rare (every 15-60 s) and rendering a node's few hundred series takes well under a
millisecond, so the registry is rendered on the loop, where the state it reads is never changed
under it. One request per connection; anything but `GET /metrics` gets a short error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

_REQUEST_LIMIT = 8192  # bytes of request line and headers
_REQUEST_TIMEOUT_S = 10.0
# The text format every Prometheus version reads (what prometheus_client's own server sends by default).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsEndpoint:
    """A listening `/metrics` server; `port` is the one actually bound (useful with port 0)."""

    def __init__(self, server: asyncio.Server) -> None:
        self.server = server
        self.host, self.port = server.sockets[0].getsockname()[:2]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"


@asynccontextmanager
async def serving_metrics(registry: CollectorRegistry, host: str, port: int) -> AsyncIterator[MetricsEndpoint]:
    """Serve `registry` at http://host:port/metrics while the block runs; OSError if the address is taken."""

    connections: set[asyncio.Task[object]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _REQUEST_TIMEOUT_S)
            writer.write(_respond(registry, head.split(b"\r\n", 1)[0]))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass
        finally:
            connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, host, port, limit=_REQUEST_LIMIT)
    endpoint = MetricsEndpoint(server)
    log.info("event=metrics_listening url=%s", endpoint.url)
    try:
        yield endpoint
    finally:
        server.close()
        for task in list(connections):  # a scraper that never finishes its request must not hold up shutdown
            task.cancel()
        await server.wait_closed()


def _respond(registry: CollectorRegistry, request_line: bytes) -> bytes:
    method, _, rest = request_line.partition(b" ")
    path = rest.partition(b" ")[0].partition(b"?")[0]
    if method not in (b"GET", b"HEAD"):
        return _response(405, "Method Not Allowed", b"only GET /metrics\n", extra=b"Allow: GET, HEAD\r\n")
    if path != b"/metrics":
        return _response(404, "Not Found", b"metrics are at /metrics\n")
    body = generate_latest(registry)
    return _response(200, "OK", b"" if method == b"HEAD" else body, content_type=CONTENT_TYPE, length=len(body))


def _response(
    status: int, reason: str, body: bytes, *, content_type: str = "text/plain; charset=utf-8", length: int | None = None, extra: bytes = b""
) -> bytes:
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body) if length is None else length}\r\n"
        "Connection: close\r\n"
    ).encode()
    return head + extra + b"\r\n" + body
