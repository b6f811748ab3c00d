"""The admin API's tasks over the operator's manifest: which files, and which copy wins.

Tasks created through the API live in STATE_DIR/api/tasks, one JSON file each (admin.py
writes them). The manifest loader reads them after the operator's files, as an Overlay:
a name the operator's manifest already has is a duplicate, unless API_EDITS_MANIFEST=true,
which lets the API's copy replace the operator's task (deleting the copy brings the
operator's version back). This rule belongs to the API; the loader only applies it.

Standard library (and layout): every command that reads the manifest imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agency_cron import layout
from agency_cron.config import TRUE_WORDS, Settings

REPLACE_HINT = (
    " (an admin API copy of a manifest task replaces it only with API_EDITS_MANIFEST=true)"
)


@dataclass(frozen=True)
class Overlay:
    """Files read after the manifest's. A task in one of them whose name the manifest
    already has replaces that task when `replaces` is true; otherwise it is a duplicate,
    and `hint` is appended to the problem."""

    files: tuple[Path, ...] = ()
    replaces: bool = False
    hint: str = ""

    def replaces_task(self, file: Path, origin: Path) -> bool:
        """Whether the task of `file` takes the place of the one loaded from `origin`."""
        return self.replaces and file in self.files and origin not in self.files

    def duplicate_hint(self, file: Path) -> str:
        return self.hint if file in self.files else ""


def api_may_replace(settings: Settings) -> bool:
    """API_EDITS_MANIFEST=true lets an API copy of an operator's task replace it."""
    return settings.get("API_EDITS_MANIFEST").strip().lower() in TRUE_WORDS


def api_files(settings: Settings, pending: dict[Path, dict | None] | None = None) -> list[Path]:
    """The API's task files, as they are about to be: `pending` maps a file to the document
    it is about to hold (None: about to be deleted)."""
    folder = layout.api_tasks_dir(settings)
    try:
        present = {p for p in folder.iterdir() if p.suffix == ".json" and p.is_file()}
    except OSError:
        present = set()
    for file, document in (pending or {}).items():
        (present.discard if document is None else present.add)(file)
    return sorted(present)


def overlay(settings: Settings, pending: dict[Path, dict | None] | None = None) -> Overlay:
    """The admin API's tasks as the loader's overlay (see load_manifest)."""
    return Overlay(tuple(api_files(settings, pending)), api_may_replace(settings), REPLACE_HINT)
