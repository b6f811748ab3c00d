"""The `postgres` fixture itself (tests/conftest.py): a real server, initdb'd for the session
as an unprivileged user, that the history tests stop and start under running tasks. These
tests hold it to what they rely on: psycopg connects with its URL, a stopped server refuses
connections, a restarted one has the same port and the same rows, and the password counts."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

import psycopg
import pytest


def connect(url: str, **options) -> psycopg.Connection:
    return psycopg.connect(url, connect_timeout=10, **options)


def test_the_url_connects_with_a_password_to_a_server_not_run_by_root(postgres):
    parts = urlsplit(postgres.url)
    assert (parts.scheme, parts.hostname, parts.port) == ("postgresql", "127.0.0.1", postgres.port)
    assert (parts.username, parts.password, parts.path) == (
        postgres.user,
        postgres.password,
        "/agency_cron",
    )
    with connect(postgres.url) as connection:
        row = connection.execute("SELECT current_user, current_database()").fetchone()
        assert row == (postgres.user, "agency_cron")
        method = connection.execute(
            "SELECT auth_method FROM pg_hba_file_rules WHERE type = 'host' LIMIT 1"
        ).fetchone()
        assert method == ("scram-sha-256",)
    assert postgres.psql("SELECT 1 + 1; SELECT 'two'") == "2\ntwo"
    # initdb refuses root, and the server must not run as root either.
    with open(f"/proc/{postgres.process.pid}/status") as status:
        uids = next(line for line in status if line.startswith("Uid:")).split()[1:]
    assert "0" not in uids


def test_a_stopped_server_refuses_and_a_started_one_has_the_same_port_and_rows(postgres, pg_url):
    with connect(pg_url) as connection:
        connection.execute("CREATE TABLE runs (id int PRIMARY KEY, task text)")
        connection.execute("INSERT INTO runs VALUES (1, 'nightly')")
    port = postgres.port
    try:
        for round_ in range(2):  # stop and start work again and again
            postgres.stop()
            assert not postgres.running
            postgres.stop()  # stopping a stopped server changes nothing
            with pytest.raises(psycopg.OperationalError, match="Connection refused"):
                connect(pg_url)
            postgres.start()
            postgres.start()  # starting a running server changes nothing
            assert postgres.running and postgres.port == port
            with connect(pg_url) as connection:
                connection.execute("INSERT INTO runs VALUES (%s, 'hourly')", (round_ + 2,))
    finally:
        postgres.start()
    assert postgres.psql("SELECT id, task FROM runs ORDER BY id", pg_url) == (
        "1|nightly\n2|hourly\n3|hourly"
    )


def test_a_wrong_or_missing_password_is_refused_on_tcp_and_on_the_socket(
    postgres, pg_url, tmp_path
):
    nowhere = str(tmp_path / "no-passfile")  # libpq's ~/.pgpass must not supply one
    wrong = pg_url.replace(f":{postgres.password}@", ":not-the-password@")
    assert wrong != pg_url
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(wrong)
    without = pg_url.replace(f":{postgres.password}@", "@")
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        connect(without, passfile=nowhere)
    database = urlsplit(pg_url).path[1:]
    socket = f"postgresql://{postgres.user}@/{database}?" + urlencode(
        {"host": postgres.socket_dir, "port": postgres.port, "passfile": nowhere}
    )
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        connect(socket)
    with connect(socket, password=postgres.password) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)


def test_each_test_database_is_its_own(postgres, pg_url):
    other = postgres.create_database("agency_cron_other")
    try:
        postgres.psql("CREATE TABLE runs (id int); INSERT INTO runs VALUES (7)", pg_url)
        assert postgres.psql("SELECT count(*) FROM runs", pg_url) == "1"
        assert postgres.psql("SELECT to_regclass('runs') IS NULL", other) == "t"
        with pytest.raises(AssertionError, match='relation "missing" does not exist'):
            postgres.psql("SELECT * FROM missing", other)
    finally:
        postgres.drop_database("agency_cron_other")
    assert (
        postgres.psql(
            "SELECT count(*) FROM pg_database WHERE datname = 'agency_cron_other'", "postgres"
        )
        == "0"
    )
