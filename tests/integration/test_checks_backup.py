"""Backup verification on real files the tests make and then damage: tar, tar.gz, gzip, SQLite,
sha256 sidecars, stale and empty backups; and `python -m agency_cron.checks backup`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import sqlite3
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from agency_cron.checks import backup
from agency_cron.checks.models import Component

DAY = 86400


def component(folder: Path, **fields) -> Component:
    return Component.model_validate({"name": "db", "backup": {"path": str(folder), **fields}})


def verify(folder: Path, **fields) -> dict[str, tuple[bool, str]]:
    """check_name -> (ok, detail) for the component's newest backup."""
    return {
        r.check_name: (r.ok, r.detail) for r in backup.verify_component(component(folder, **fields))
    }


def make_tar(path: Path, mode: str = "w:gz", files: int = 3, size: int = 100_000) -> Path:
    """An archive of random (incompressible) members, so that cutting it hits member data."""
    with tarfile.open(path, mode) as archive:
        for index in range(files):
            data = os.urandom(size)
            info = tarfile.TarInfo(f"data/part{index}.bin")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def make_sqlite(path: Path, rows: int = 3000) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, x TEXT)")
    conn.execute("CREATE INDEX t_x ON t (x)")
    conn.executemany("INSERT INTO t (x) VALUES (?)", [(os.urandom(40).hex(),) for _ in range(rows)])
    conn.commit()
    conn.close()
    return path


def flip_middle(path: Path, count: int = 16) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + count] = bytes(b ^ 0xFF for b in data[middle : middle + count])
    path.write_bytes(data)


def age(path: Path, seconds: float) -> None:
    moment = time.time() - seconds
    os.utime(path, (moment, moment))


def write_sidecar(path: Path, digest: str | None = None) -> Path:
    digest = digest or hashlib.sha256(path.read_bytes()).hexdigest()
    sidecar = path.with_name(path.name + ".sha256")
    sidecar.write_text(f"{digest}  {path.name}\n")  # sha256sum's format
    return sidecar


def test_good_tar_gz_passes_every_check(tmp_path):
    make_tar(tmp_path / "db-2024-01-01.tar.gz")
    results = verify(tmp_path, max_age="1h", min_size="100KB")
    assert results["age"][0] and results["age"][1].startswith("db-2024-01-01.tar.gz is ")
    assert results["size"][0] and results["size"][1].endswith("(min 100.0KB)")
    assert results["integrity"] == (True, "3 members, 293.0KB of data read")
    assert list(results) == ["age", "size", "integrity"]


def test_truncated_tar_gz_fails_integrity(tmp_path):
    archive = make_tar(tmp_path / "db.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    ok, detail = verify(tmp_path)["integrity"]
    assert not ok
    assert detail.startswith("db.tar.gz: damaged tar.gz: ")


def test_plain_tar_good_and_truncated(tmp_path):
    archive = make_tar(tmp_path / "db.tar", mode="w")
    assert verify(tmp_path)["integrity"][0]
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    assert verify(tmp_path)["integrity"] == (False, "db.tar: damaged tar: unexpected end of data")


def test_empty_archive_fails(tmp_path):
    with tarfile.open(tmp_path / "db.tar", "w"):
        pass
    assert verify(tmp_path)["integrity"] == (False, "db.tar: archive has no members")


def test_corrupted_gzip_fails_and_a_good_one_passes(tmp_path):
    dump = tmp_path / "db.sql.gz"
    dump.write_bytes(gzip.compress(b"INSERT INTO t VALUES (1);\n" * 20_000))
    assert verify(tmp_path)["integrity"] == (True, "507.8KB uncompressed, CRC ok")
    flip_middle(dump)
    ok, detail = verify(tmp_path)["integrity"]
    assert not ok and detail.startswith("db.sql.gz: damaged gzip: ")


def test_gzip_bit_flip_in_stored_data_is_caught_by_the_crc(tmp_path):
    dump = tmp_path / "db.bin.gz"
    dump.write_bytes(gzip.compress(os.urandom(200_000)))  # random data: stored, not deflated
    flip_middle(dump)
    ok, detail = verify(tmp_path)["integrity"]
    assert not ok and "CRC check failed" in detail


def test_not_a_gzip(tmp_path):
    (tmp_path / "db.gz").write_text("plain text")
    assert verify(tmp_path)["integrity"] == (False, "db.gz: not a gzip file")


def test_stale_backup_fails_age(tmp_path):
    archive = make_tar(tmp_path / "db.tar.gz")
    age(archive, 3 * DAY)
    results = verify(tmp_path)
    assert results["age"] == (False, "db.tar.gz is 3d old (max 1d2h)")
    assert results["integrity"][0]


def test_empty_file_fails_min_size(tmp_path):
    (tmp_path / "db.dump").write_bytes(b"")
    results = verify(tmp_path, min_size=1)
    assert results["size"] == (False, "db.dump is 0B (min 1B)")
    assert "integrity" not in results  # .dump: no known type, age and size only


def test_good_and_corrupted_sqlite(tmp_path):
    db = make_sqlite(tmp_path / "app.sqlite3")
    assert verify(tmp_path)["integrity"] == (True, "integrity_check ok")
    data = bytearray(db.read_bytes())
    page = 4096 * (len(data) // 4096 // 2)  # a b-tree page in the middle of the file
    data[page + 8 : page + 200] = b"\xff" * 192  # its cell pointers now point nowhere
    db.write_bytes(data)
    ok, detail = verify(tmp_path)["integrity"]
    assert not ok
    # SQLite either lists the damage or refuses the page outright: both fail the backup.
    assert detail.startswith(
        ("app.sqlite3: integrity_check found ", "app.sqlite3: damaged sqlite: ")
    ), detail
    assert "\n" not in detail


def test_sqlite_verification_never_writes_the_backup(tmp_path):
    db = make_sqlite(tmp_path / "app.db", rows=10)
    os.chmod(db, 0o444)
    before = (db.read_bytes(), db.stat().st_mtime_ns)
    assert verify(tmp_path)["integrity"][0]
    assert (db.read_bytes(), db.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]


def test_a_file_that_is_not_sqlite(tmp_path):
    (tmp_path / "app.db").write_bytes(b"")
    assert verify(tmp_path)["integrity"] == (False, "app.db: not a SQLite database")


def test_sha256_match_mismatch_and_missing(tmp_path):
    archive = make_tar(tmp_path / "db.tar.gz")
    assert verify(tmp_path, checksum="sha256")["sha256"] == (False, "db.tar.gz.sha256 not found")
    write_sidecar(archive)  # newer than the archive, and still not taken for the backup
    assert verify(tmp_path, checksum="sha256")["sha256"] == (
        True,
        "db.tar.gz matches db.tar.gz.sha256",
    )
    write_sidecar(archive, "0" * 64)
    assert verify(tmp_path, checksum="sha256")["sha256"] == (
        False,
        "db.tar.gz does not match db.tar.gz.sha256",
    )
    archive.with_name("db.tar.gz.sha256").write_text("not a digest\n")
    assert not verify(tmp_path, checksum="sha256")["sha256"][0]


def test_the_newest_matching_file_is_verified(tmp_path):
    old = make_tar(tmp_path / "db-1.tar.gz")
    age(old, 2 * DAY)
    (tmp_path / "db-2.tar.gz").write_bytes(b"half-written")
    (tmp_path / "other.tar.gz").write_bytes(b"")  # newest, but outside the glob
    results = verify(tmp_path, glob="db-*.tar.gz")
    assert results["age"][1].startswith("db-2.tar.gz is ")
    assert not results["integrity"][0]


def test_declared_type_overrides_the_suffix(tmp_path):
    make_sqlite(tmp_path / "nightly.bak", rows=10)
    assert "integrity" not in verify(tmp_path)
    assert verify(tmp_path, type="sqlite")["integrity"] == (True, "integrity_check ok")
    assert not verify(tmp_path, type="gzip")["integrity"][0]
    assert "integrity" not in verify(tmp_path, type="none")


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.tar.gz", "tar.gz"),
        ("a.TGZ", "tar.gz"),
        ("a.tar", "tar"),
        ("a.tar.xz", "tar"),
        ("a.sql.gz", "gzip"),
        ("a.sqlite", "sqlite"),
        ("a.db", "sqlite"),
        ("a.dump", "none"),
    ],
)
def test_auto_types(name, kind):
    assert backup.detect_type(Path(name), "auto") == kind


def test_no_backup_or_no_folder(tmp_path):
    results = backup.verify_component(component(tmp_path, glob="*.tar.gz"))
    assert [(r.check_name, r.ok, r.detail) for r in results] == [
        ("file", False, f"no backup matches {tmp_path}/*.tar.gz")
    ]
    missing = tmp_path / "gone"
    (result,) = backup.run_backups([component(missing)])
    assert (result.ok, result.detail) == (False, f"backup folder {missing} not found")


def test_run_backups_skips_components_without_a_backup(tmp_path):
    make_tar(tmp_path / "db.tar.gz")
    web = Component.model_validate(
        {"name": "web", "checks": [{"type": "tcp", "host": "a", "port": 1}]}
    )
    results = backup.run_backups([web, component(tmp_path)])
    assert {r.component for r in results} == {"db"}
    assert all(r.kind == "backup" for r in results)


def test_cli_backup_with_backup_verify_components(env, tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    write_sidecar(make_tar(good / "web.tar.gz"))
    stale = make_tar(bad / "db.tar.gz")
    age(stale, 3 * DAY)
    env.write_manifest(
        f"""\
        components:
          - name: web
            backup: {{path: {good}, checksum: sha256}}
          - name: db
            backup: {{path: {bad}, glob: "*.tar.gz", max_age: 1d}}
        """
    )
    environ = {k: v for k, v in os.environ.items() if k not in ("AGENCY_CRON_RUN_ID",)}

    def run(selection: str) -> subprocess.CompletedProcess:
        return env.checks("backup", environ={**environ, "BACKUP_VERIFY_COMPONENTS": selection})

    done = run("all")
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert "FAIL db/age         db.tar.gz is 3d old (max 1d)" in lines
    assert lines[-1] == "backup: 7 checks, 1 failed: db"
    done = run("web")
    assert (done.returncode, done.stdout.splitlines()[-1]) == (0, "backup: 4 checks, all ok")
    with sqlite3.connect(env.state_dir / "history.db") as conn:
        rows = conn.execute("SELECT kind, component, ok FROM check_results").fetchall()
    assert len(rows) == 11 and {row[0] for row in rows} == {"backup"}
    assert rows.count(("backup", "db", 0)) == 1
