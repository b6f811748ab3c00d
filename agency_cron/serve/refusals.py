"""Refused requests in the audit log, at a rate no flood can turn into a full disk.

Every refusal (no or a wrong token, a read-only token on a write, a token in the URL, a
cross-site request, a foreign Host without a token) is one audit line, outcome "refused",
with the reason, until a client has had PER_CLIENT of them in the current minute, or all
clients together TOTAL. Past that, refusals are only counted, and when the minute is over
one line per client says how many were left out (outcome "suppressed"); clients beyond
SUMMARIZED share one such line (client "others"). So a minute of flood costs at most
TOTAL + SUMMARIZED + 1 lines (about 40 KB), whatever its rate and however many addresses
it comes from, while the first refusals of every client, which tell who it was, are kept;
admin.audit's size cap with one rotation bounds the file in any case.

Everything here runs on the server's event loop: no lock is needed between refusals, and
the summary is written by a timer on that loop (or by flush() when the server stops).
"""

from __future__ import annotations

import asyncio
import logging
import time

from agency_cron import admin
from agency_cron.config import Settings

PER_CLIENT = 20
TOTAL = 100
SUMMARIZED = 20
WINDOW_S = 60.0
OTHERS = "others"
MAX_TEXT = 200  # paths and user agents are the client's text: cut them

log = logging.getLogger("agency_cron.serve")


class RefusalLog:
    """Writes refusals to STATE_DIR/api/audit.log, rate-limited as the module says."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._reset()

    def _reset(self) -> None:
        self.window_started: float | None = None  # time.monotonic() of the window's start
        self.window_wall = ""
        self.written: dict[str, int] = {}
        self.total = 0
        self.suppressed: dict[str, int] = {}
        self.timer: asyncio.TimerHandle | None = None

    def refused(self, actor: dict, host: str, action: str, task: str | None, detail) -> None:
        """Audit one refusal by the client at `host`, or count it when over the rate."""
        now = time.monotonic()
        if self.window_started is not None and now - self.window_started >= WINDOW_S:
            self.flush()
        if self.window_started is None:
            self.window_started = now
            self.window_wall = _iso_now()
        if self.written.get(host, 0) < PER_CLIENT and self.total < TOTAL:
            self.written[host] = self.written.get(host, 0) + 1
            self.total += 1
            self._write(actor, action[:MAX_TEXT], task, "refused", detail)
            return
        key = host if host in self.suppressed or len(self.suppressed) < SUMMARIZED else OTHERS
        self.suppressed[key] = self.suppressed.get(key, 0) + 1
        if self.timer is None:
            self._arm(self.window_started + WINDOW_S - now)

    def _arm(self, delay: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on the server's loop (a test): flush() writes the summary
            return
        self.timer = loop.call_later(delay, self.flush)

    def flush(self) -> None:
        """End the current window: one "suppressed" line per client that had refusals left
        out. Called by the window's timer, by the next refusal after it, and at shutdown."""
        if self.timer is not None:
            self.timer.cancel()
        for client, count in self.suppressed.items():
            self._write(
                {"actor": None, "client": client, "user_agent": None},
                "request",
                None,
                "suppressed",
                {
                    "refusals": count,
                    "since": self.window_wall,
                    "reason": f"more than {PER_CLIENT} refusals a minute from one client"
                    f" or {TOTAL} from all",
                },
            )
        self._reset()

    def _write(self, actor: dict, action: str, task, outcome: str, detail) -> None:
        user_agent = actor.get("user_agent")
        actor = {**actor, "user_agent": user_agent[:MAX_TEXT] if user_agent else user_agent}
        try:
            admin.audit(self.settings, actor, action, task, outcome, detail)
        except OSError as exc:
            # The refusal itself is answered in any case; the operator learns from the log.
            log.error("cannot write the audit log: %s", exc)


def _iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
