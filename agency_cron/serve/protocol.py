"""uvicorn's h11 protocol with the two guards uvicorn lacks: a deadline for receiving a
request, and a cap on open connections; and uvicorn's server with a clean exit on a stop.

uvicorn's `timeout_keep_alive` covers only the silence between two requests and restarts
with every byte received, so a client sending one header line every 2 s keeps its
connection forever; `limit_concurrency` answers 503 to requests beyond the limit but keeps
every connection open while its head trickles in (1,500 such connections were held). So:

- a request's head must be complete within `header_timeout` seconds of the connection
  opening (or of the previous response), and its body within as long again once the head
  is in; otherwise the connection is closed (after a 408 if part of a head had arrived);
- a connection beyond `max_connections` open ones is answered 503 and closed at once.

Both are checked on uvicorn's event loop, with no thread or task per connection.
"""

from __future__ import annotations

import contextlib
import json
import signal

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from agency_cron.serve.limits import Limits

# The client's h11 states while its request is still arriving: the head, then the body.
ARRIVING = (h11.IDLE, h11.SEND_BODY)


def _raw_problem(status: int, reason: str, detail: str) -> bytes:
    body = json.dumps(
        {"type": "about:blank", "title": reason, "status": status, "detail": detail, "errors": []},
        separators=(",", ":"),
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


OVERLOADED = _raw_problem(
    503, "Service Unavailable", "too many open connections (API_MAX_CONNECTIONS)"
)
TOO_SLOW = _raw_problem(
    408, "Request Timeout", "the request was not received in time (API_HEADER_TIMEOUT)"
)


def protocol_class(limits: Limits) -> type:
    """GuardedH11Protocol bound to `limits` (uvicorn instantiates the class it is given)."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"header_timeout": limits.header_timeout, "max_connections": limits.max_connections},
    )


class GuardedH11Protocol(H11Protocol):
    header_timeout = 30.0
    max_connections = 100
    refused = False  # over the cap: never became one of the server's connections
    _deadline = None  # the asyncio.TimerHandle that closes a connection too slow to send
    _phase = None  # what the deadline is for: (request cycle, client state)

    def connection_made(self, transport) -> None:
        if len(self.server_state.connections) >= self.max_connections:
            self.refused = True
            transport.write(OVERLOADED)
            transport.close()
            return
        super().connection_made(transport)
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.refused:
            return
        self._cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def _watch(self) -> None:
        """(Re)arm the deadline when the client starts sending a head or a body; disarm it
        once the whole request is in (or the connection ends)."""
        state = self.conn.their_state
        phase = (self.cycle, state) if state in ARRIVING else None
        if phase == self._phase:
            return
        self._cancel()
        self._phase = phase
        if phase is not None and not self.transport.is_closing():
            self._deadline = self.loop.call_later(self.header_timeout, self._expired)

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        started_head = self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]
        if started_head and self.conn.our_state is h11.IDLE:
            self.transport.write(TOO_SLOW)
        if self.client and (started_head or self.conn.their_state is h11.SEND_BODY):
            self.logger.warning(
                "%s:%d - request not received within %gs (API_HEADER_TIMEOUT); closed",
                *self.client,
                self.header_timeout,
            )
        self.transport.close()


class Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):
        """uvicorn's handlers for SIGINT and SIGTERM, without raising the signal again once
        the server has shut down (that made SIGTERM exit 143 and SIGINT 130): a stop that
        was asked for is no failure."""
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)
