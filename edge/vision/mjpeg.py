"""Reading multipart MJPEG streams: HTTP cameras (multipart/x-mixed-replace) and ffmpeg's mpjpeg output."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

MAX_JPEG_BYTES = 16 * 1024 * 1024  # a 4K JPEG is a few MB; more is a broken or hostile stream
MAX_HEADER_LINES = 32


class StreamError(ValueError):
    """The stream is not multipart JPEG, or a part is malformed."""


def boundary_of(content_type: str) -> str | None:
    """The boundary parameter of a multipart Content-Type header, without leading dashes."""
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.strip().partition("=")
        if name.lower() == "boundary":
            return value.strip().strip('"').removeprefix("--") or None
    return None


def jpeg_parts(stream: BinaryIO, boundary: str | None = None) -> Iterator[bytes]:
    """The JPEG images of a multipart stream, in order, until it ends.

    Parts with a Content-Length header are read exactly; parts without one are read up to the next boundary.
    With no known boundary, the first `--...` line of the stream sets it.
    """
    marker = f"--{boundary}".encode() if boundary else None
    line = stream.readline(1024)
    while line:
        stripped = line.strip()
        if not stripped or (marker is not None and not stripped.startswith(marker)):
            line = stream.readline(1024)  # preamble, or the blank line after a part
            continue
        if marker is None:
            if not stripped.startswith(b"--"):
                raise StreamError(f"expected a multipart boundary, got {stripped[:40]!r}")
            marker = stripped
        if stripped == marker + b"--":
            return  # the closing boundary
        headers = _headers(stream)
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit() or int(length) > MAX_JPEG_BYTES:
                raise StreamError(f"bad Content-Length {length!r}")
            body = stream.read(int(length))
            if len(body) < int(length):
                return  # the stream ended in the middle of a part
            line = stream.readline(1024)
        else:
            body, line = _until(stream, marker)
        if body[:2] == b"\xff\xd8":
            yield body


def _headers(stream: BinaryIO) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADER_LINES):
        line = stream.readline(1024)
        if not line.strip():
            return headers
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    raise StreamError("a part has too many header lines")


def _until(stream: BinaryIO, marker: bytes) -> tuple[bytes, bytes]:
    """The bytes up to the next boundary line, and that line."""
    chunks: list[bytes] = []
    size = 0
    while True:
        line = stream.readline(65536)
        if not line or line.strip().startswith(marker):
            body = b"".join(chunks)
            return body.removesuffix(b"\r\n").removesuffix(b"\n"), line
        chunks.append(line)
        size += len(line)
        if size > MAX_JPEG_BYTES:
            raise StreamError("a part without Content-Length never ended")
