"""Text from tasks made safe for a terminal, the way `systemctl status` shows journal lines.

Task output is untrusted: an ESC or BEL byte printed to the operator's terminal can set the
window title, clear the screen or hide the lines around it. Every human view (status,
history, log-summary, health, doctor, install diffs, the dashboard's text) shows such
characters as `\\x1b`; `--json` keeps the original text. Standard library only.
"""

from __future__ import annotations

import re

# C0 controls except tab and newline (which are layout, not commands), DEL, and C1.
CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    """`text` with every control character but tab and newline written as `\\xNN`."""
    return CONTROLS.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def escape_all(value):
    """escape_controls() applied to every string inside lists, tuples and dicts."""
    if isinstance(value, str):
        return escape_controls(value)
    if isinstance(value, dict):
        return {key: escape_all(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(escape_all(item) for item in value)
    return value
