"""What one client may cost `agency-cron serve`: body size, time to send a request, sockets.

    API_MAX_BODY         largest request body (bytes, or with K/M suffix), default 1M
    API_HEADER_TIMEOUT   seconds a client has to send a request's head, and again its body
    API_MAX_CONNECTIONS  open connections at most; the ones beyond are answered 503, closed

The body limit is enforced twice, neither time after buffering the body: a Content-Length
above it is answered 413 before the application runs (BodyLimit below), and a chunked body
is counted as FastAPI reads it (its `max_body_size`) and cut at the limit. The other two
are enforced by the connection's protocol (protocol.py).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from agency_cron.config import Settings
from agency_cron.errors import ConfigError

DEFAULTS = {"API_MAX_BODY": "1M", "API_HEADER_TIMEOUT": "30", "API_MAX_CONNECTIONS": "100"}
SIZE = re.compile(r"^([0-9]+)\s*([KMG]?)i?B?$", re.IGNORECASE)
UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
PROBLEM = b"application/problem+json"


@dataclass(frozen=True)
class Limits:
    max_body: int
    header_timeout: float
    max_connections: int


def load_limits(settings: Settings) -> Limits:
    """The limits of config.env/the environment; ConfigError naming every bad key."""
    problems: list[str] = []

    def value(key: str) -> str:
        return settings.get(key).strip() or DEFAULTS[key]

    def fail(key: str, why: str) -> None:
        origin = "environment" if key in os.environ else settings.config_path or "defaults"
        problems.append(f"{origin}: {key}: {why}, got {value(key)!r}")

    body = _size(value("API_MAX_BODY"))
    if body is None:
        fail("API_MAX_BODY", "expected a size in bytes >= 1 (1048576, 512K, 1M)")
    timeout = _number(value("API_HEADER_TIMEOUT"))
    if timeout is None:
        fail("API_HEADER_TIMEOUT", "expected seconds > 0")
    connections = _number(value("API_MAX_CONNECTIONS"))
    if connections is None or connections != int(connections):
        fail("API_MAX_CONNECTIONS", "expected a whole number >= 1")
    if problems or body is None or timeout is None or connections is None:
        raise ConfigError(*problems)
    return Limits(body, timeout, int(connections))


def _size(text: str) -> int | None:
    match = SIZE.match(text)
    if not match:
        return None
    size = int(match.group(1)) * UNITS[match.group(2).upper()]
    return size if size >= 1 else None


def _number(text: str) -> float | None:
    if not text.isascii():  # float() reads other scripts' digits too
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if 0 < number < float("inf") else None


def too_large_detail(limit: int) -> str:
    return f"the request body is larger than API_MAX_BODY ({limit} bytes)"


class BodyLimit:
    """ASGI wrapper: a request whose Content-Length exceeds `limit` is answered 413 at once.

    Nothing of its body is read (uvicorn throws away what still arrives, for at most
    API_HEADER_TIMEOUT seconds), and the application never sees the request.
    """

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and _declared_length(scope) > self.limit:
            await _send_too_large(send, self.limit)
            return
        await self.app(scope, receive, send)


def _declared_length(scope) -> int:
    """The Content-Length of a request (0 if none; a chunked body is counted as it is read).
    h11 has already refused malformed or conflicting values."""
    headers = dict(scope["headers"])
    if b"transfer-encoding" in headers:
        return 0
    text = headers.get(b"content-length", b"0")
    return int(text) if text.isdigit() else 0


async def _send_too_large(send, limit: int) -> None:
    body = json.dumps(
        {
            "type": "about:blank",
            "title": "Content too large",
            "status": 413,
            "detail": too_large_detail(limit),
            "errors": [],
        },
        separators=(",", ":"),
    ).encode()
    headers = [
        (b"content-type", PROBLEM),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
