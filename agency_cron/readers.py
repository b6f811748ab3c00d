"""Which history a reader reads: `--host NAME|all`, one rule for every reader (status,
history, log-summary, health, the dashboard, serve, metrics).

- The SQLite default holds this host's runs only: `--host all` and this host's name read
  it, another host's name reads nothing.
- With HISTORY_URL=postgresql://... the readers read the shared history, after sending
  what the local databases still hold (so this host's newest runs are in it): the whole
  fleet, or one host's rows plus every row of the `scope: fleet` tasks (a fleet task's
  runs belong to the fleet, whichever host ran them). When it does not answer, a reader
  of this host falls back to the local databases and says so (`note`); a reader of the
  fleet or of another host fails with one line, exit 1.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agency_cron import history
from agency_cron.config import Settings
from agency_cron.errors import CheckFailed

if TYPE_CHECKING:  # psycopg through remote: only when a shared history is configured
    from agency_cron import remote

ALL = "all"
THIS = ""  # the default of status and history: this host


class HistoryUnavailable(CheckFailed):
    """The shared history did not answer a reader that needs it (exit 1)."""


@dataclass
class Histories:
    """The connections to query (sqlite3 or remote.Reader, the same calls on each), and
    what they hold: `host` (None: every host), `shared` (the shared history), `note` (a
    warning for the user: the shared history was away, this host's local history shown)."""

    conns: list[Any]
    host: str | None
    shared: bool = False
    note: str | None = None
    hosts: list[str] = field(default_factory=list)  # hosts that reported, when known

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.conns = []


def wanted_host(settings: Settings, choice: str | None, default: str = THIS) -> str | None:
    """The host a `--host` value asks for: a name, or None for the whole fleet."""
    choice = (default if choice is None else choice).strip()
    if choice.lower() == ALL:
        return None
    return choice or settings.host_name


def open_histories(
    settings: Settings,
    choice: str | None = None,
    default: str = THIS,
    fleet_tasks: Iterable[str] = (),
) -> Histories:
    """The histories a reader queries for `--host choice` (None: `default`)."""
    host = wanted_host(settings, choice, default)
    url = settings.history_url
    if url is None:
        return _local(settings, host)
    from agency_cron import remote

    synced = send_spool(settings, url)
    try:
        if synced.unreachable:  # asked once: a reader waits for it once, not twice
            raise remote.Unreachable(synced.error)
        reader = remote.reader(url, settings.history_timeout, host, fleet_tasks)
    except remote.Unreachable as exc:
        if host == settings.host_name:
            found = _local(settings, host)
            found.note = f"{exc}; showing this host's local history"
            return found
        raise HistoryUnavailable(
            f"{exc}; `--host {settings.host_name}` shows this host's local history"
        ) from None
    return Histories([reader], host, shared=True)


def send_spool(settings: Settings, url: str) -> remote.SyncResult:
    """remote.sync() of this installation's local databases (root's and each user's) to
    the shared history at `url`: what `history sync`, doctor and every reader do."""
    from agency_cron import remote

    return remote.sync(
        url,
        str(settings.state_dir),
        settings.host_name,
        settings.history_timeout,
        str(settings.history_db),
    )


def _local(settings: Settings, host: str | None) -> Histories:
    if host is not None and host != settings.host_name:
        return Histories([], host)  # a local history holds this host's runs alone
    try:
        conns = history.connect_all(
            str(settings.state_dir), settings.host_name, str(settings.history_db)
        )
    except sqlite3.Error:
        conns = []
    return Histories(conns, host, hosts=[settings.host_name] if conns else [])


def fleet_task_names(manifest: Any) -> list[str]:
    """The manifest's `scope: fleet` tasks (their rows count in every host's view)."""
    return [task.name for task in manifest.tasks if getattr(task, "scope", "host") == "fleet"]


@contextlib.contextmanager
def viewing(
    settings: Settings, manifest: Any, choice: str | None, default: str = THIS
) -> Iterator[Histories]:
    """open_histories() of `--host choice` for the manifest's tasks, closed afterwards. A
    shared history that fails mid-way (remote.RemoteError, a sqlite3 error on purpose)
    is HistoryUnavailable, one line, as when it does not answer at all."""
    view = open_histories(settings, choice, default, fleet_task_names(manifest))
    try:
        yield view
    except sqlite3.Error as exc:
        if not view.shared:
            raise
        raise HistoryUnavailable(f"the shared history failed: {exc}") from None
    finally:
        view.close()
