"""The one JSON writer of `--json` outputs (the CLI and the quick path of quick.py)."""

from __future__ import annotations

import json


def json_text(data: object) -> str:
    """What `--json` prints: indented, non-JSON values (paths, times) as their str()."""
    return json.dumps(data, indent=2, default=str) + "\n"
