"""What `make setup-cronjobs` puts in place around `agency-cron install` (README, "After set-up").

    python -m agency_cron.installation --root ROOT --config FILE --manifest FILE [--link PATH]

run with the interpreter of the runtime venv, ROOT/venv, that make has just made current.

- ROOT/config.env and ROOT/tasks.yaml: copies of the checkout's config and manifest. They
  are the last places CONTRACT.md's resolution looks (--config, AGENCY_CRON_CONFIG,
  ./config.env, $AGENCY_ROOT/config.env; the same for tasks.yaml), so every entry point finds
  them from any directory and without the checkout. A file there that set-up did not write,
  or that someone edited since, is the operator's: never overwritten; when it differs from
  the checkout's it is kept, and set-up says so. What set-up wrote is recorded (sha256) in
  ROOT/venv/agency-cron-placed.json, so a copy nobody edited follows the checkout.
  AGENCY_CRON_CONFIG / AGENCY_CRON_MANIFEST in the environment name the operator's own
  files: then nothing is placed for that one.
- ROOT/venv/agency-cron-root: the root, for the venv's own commands (see
  config.default_agency_root): ROOT/venv/bin/agency-cron finds ROOT/config.env anywhere.
- --link PATH: a symlink to ROOT/venv/bin/agency-cron (make asks for /usr/local/bin/agency-cron
  as root with the default root). Whatever else is at PATH is kept, with a note.

Idempotent: what is already right is not touched (mtimes kept); each change is one line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

from agency_cron.config import ROOT_MARKER, read_config_file
from agency_cron.errors import AgencyCronError, UsageError
from agency_cron.fs import read_bytes, write_atomic, write_if_changed

PLACED = "agency-cron-placed.json"


def venv_dir(root: Path) -> Path:
    return root / "venv"


def config_mode(source: Path) -> int:
    """0600 for a config holding secrets, or one its owner keeps private; else 0644 (tasks
    that run as other users read it)."""
    from agency_cron.doctor import secret_keys

    private = not source.stat().st_mode & 0o004 or secret_keys(read_config_file(source))
    return 0o600 if private else 0o644


def manifest_mode(source: Path) -> int:
    return 0o644 if source.stat().st_mode & 0o004 else 0o600


def place(source: Path, target: Path, mode_of, placed: dict[str, str]) -> str | None:
    """Copy `source` to `target` (mode `mode_of(source)`) unless `target` is the operator's;
    updates `placed` (target -> sha256 of what set-up wrote). Returns the line to print,
    None when nothing changed."""
    content = source.read_bytes()
    digest = hashlib.sha256(content).hexdigest()
    current = read_bytes(target)
    if current == content:
        placed[str(target)] = digest
        return None
    if current is None or placed.get(str(target)) == hashlib.sha256(current).hexdigest():
        mode = mode_of(source)
        write_atomic(target, content, mode)
        placed[str(target)] = digest
        verb = "placed" if current is None else "updated"
        return f"{verb} {target} (copy of {source}, mode {mode:04o})"
    placed.pop(str(target), None)
    return (
        f"kept {target}: it differs from {source} and set-up did not write it as it is"
        f" (to take {source}: rm {target}, then make setup-cronjobs again)"
    )


def link(command: Path, where: Path) -> str | None:
    """A symlink at `where` to `command`, unless something else is there."""
    if where.is_symlink() and os.readlink(where) == str(command):
        return None
    if where.is_symlink() or where.exists():
        return f"kept {where} (not a link to {command}); the installed command is {command}"
    where.symlink_to(command)
    return f"linked {where} -> {command}"


def set_up(root: Path, config: Path, manifest: Path, link_at: Path | None) -> list[str]:
    """Everything this module's docstring lists; the lines to print. Every check comes
    before the first write."""
    venv = venv_dir(root)
    if not (venv / "bin" / "agency-cron").is_file():
        raise UsageError(f"{venv}: no runtime venv here (make setup-cronjobs creates it)")
    copies = []
    if not os.environ.get("AGENCY_CRON_CONFIG"):
        copies.append((_need_file(config, "--config"), root / "config.env", config_mode))
    if not os.environ.get("AGENCY_CRON_MANIFEST"):
        copies.append((_need_file(manifest, "--manifest"), root / "tasks.yaml", manifest_mode))
    record_path = venv / PLACED
    placed = _read_record(record_path)
    lines = [place(source, target, mode_of, placed) for source, target, mode_of in copies]
    record = json.dumps(placed, indent=1, sort_keys=True) + "\n"
    write_if_changed(record_path, record.encode(), 0o644)
    write_if_changed(venv / ROOT_MARKER, f"{root}\n".encode(), 0o644)
    if link_at is not None:
        lines.append(link(venv / "bin" / "agency-cron", link_at))
    return [line for line in lines if line]


def _need_file(path: Path, option: str) -> Path:
    if not path.is_file():
        raise UsageError(
            f"{path}: {option}: not a file (set-up installs one file; name a folder of"
            " manifests with AGENCY_CRON_MANIFEST instead)"
        )
    return path


def _read_record(path: Path) -> dict[str, str]:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m agency_cron.installation",
        description="Place config.env and tasks.yaml under AGENCY_ROOT (make setup-cronjobs).",
    )
    parser.add_argument("--root", type=Path, required=True, help="AGENCY_ROOT")
    parser.add_argument("--config", type=Path, required=True, help="config.env to install")
    parser.add_argument("--manifest", type=Path, required=True, help="manifest file to install")
    parser.add_argument("--link", type=Path, help="symlink to the installed agency-cron")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    try:
        if not args.root.is_absolute():
            raise UsageError(f"--root: AGENCY_ROOT must be an absolute path, got {args.root}")
        for line in set_up(args.root, args.config, args.manifest, args.link):
            print(line)
    except AgencyCronError as exc:
        for problem in exc.problems:
            print(f"agency-cron: error: {problem}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"agency-cron: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
