"""`logrotate -d` on a config: its `error:` lines, the one way install and doctor read them.

logrotate exits 0 on unknown options, unsafe files and skipped configs, so its messages are
the result. It runs on a 0644 copy in a temporary folder, with a state file of its own: an
unsafe mode of the real file (doctor reports that on its own) does not hide a syntax error,
and the real state file is never touched. Errors about logs that do not exist yet
(`stat of ... failed`) are left out: a fresh installation has none.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

TIMEOUT_S = 60  # a hung logrotate (an NFS log folder, say) must not hang install or doctor


def errors(binary: str, text: bytes, shown: Path) -> list[str]:
    """The `error:` lines of `logrotate -d` on `text`, naming `shown` instead of the copy."""
    with tempfile.TemporaryDirectory(prefix="agency-cron-logrotate-") as folder:
        copy = Path(folder) / shown.name
        copy.write_bytes(text)
        copy.chmod(0o644)
        output = _debug(binary, copy, Path(folder) / "state")
    lines = [line.strip() for line in output.replace(str(copy), str(shown)).splitlines()]
    return [line for line in lines if line.lower().startswith("error:") and "stat of" not in line]


def _debug(binary: str, config: Path, state: Path) -> str:
    try:
        result = subprocess.run(
            [binary, "-d", "-s", str(state), str(config)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"error: logrotate -d did not finish within {TIMEOUT_S}s"
    return result.stdout + result.stderr
