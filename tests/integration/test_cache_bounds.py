"""The install and read caches (fastpath.write_record) stay bounded and leave nothing
behind on a full disk: a cache that grows without end, or half-written files, would be a
fault of its own."""

from __future__ import annotations

import json
import os
import subprocess

from agency_cron import fastpath


def test_the_cache_keeps_only_the_newest_records(tmp_path):
    folder = tmp_path / "cache"
    for number in range(fastpath.MAX_RECORDS + 20):
        path = folder / f"install-{number:04d}.json"
        fastpath.write_record(str(path), {"number": number})
        os.utime(path, ns=(number * 10**9, number * 10**9))  # creation order, 1 s apart
    kept = sorted(p.name for p in folder.iterdir())
    assert len(kept) == fastpath.MAX_RECORDS
    newest = f"install-{fastpath.MAX_RECORDS + 19:04d}.json"
    assert kept[0] == "install-0020.json" and kept[-1] == newest
    assert json.loads((folder / kept[-1]).read_text()) == {"number": fastpath.MAX_RECORDS + 19}


def test_a_full_disk_leaves_no_partial_record(tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(folder)], check=True)
    try:
        path = folder / "cache" / "install-big.json"
        fastpath.write_record(str(path), {"files": ["x" * 1000] * 200})  # ~200 kB: ENOSPC
        assert not path.exists()
        assert list((folder / "cache").iterdir()) == []  # no temporary file left
        assert fastpath.read_record(str(path)) is None
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_every_command_still_answers_with_its_cache_on_a_full_disk(env, cli_process, tmp_path):
    env.write_manifest(
        'tasks:\n  - name: alpha\n    schedule: "*/5 * * * *"\n    command: "true"\n'
    )
    cache = tmp_path / "full"
    cache.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(cache)], check=True)
    try:
        with open(cache / "filler", "wb", buffering=0) as handle:
            try:
                while True:
                    handle.write(b"\0" * 512)
            except OSError:  # ENOSPC: the disk is full
                pass
        environ = {"XDG_CACHE_HOME": str(cache)}
        assert cli_process(*env.args("install"), env=environ).returncode == 0
        for command in (["list", "--json"], ["status", "--json"], ["log-summary", "--json"]):
            for _ in range(2):  # the second would be the cached answer, had it been written
                result = cli_process(*env.args(*command), env=environ)
                assert result.returncode == 0, result.stderr
                json.loads(result.stdout)
        assert [p.name for p in cache.rglob("*.tmp")] == []  # nothing half-written
    finally:
        subprocess.run(["umount", str(cache)], check=True)
