"""The components:/integrations: sections: validation messages, defaults, selection, output."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agency_cron.checks import cli
from agency_cron.checks.common import CheckResult
from agency_cron.checks.models import Component, Integration, parse_size, validate_section
from agency_cron.config import load_settings
from agency_cron.errors import UsageError
from agency_cron.secrets import password_of_url as url_secrets
from agency_cron.secrets import without_password as redact_url

FILE = Path("tasks.yaml")


def validate(key: str, text: str, variables: dict | None = None) -> tuple[tuple, list[str]]:
    problems: list[str] = []
    found = validate_section(FILE, key, yaml.safe_load(text), variables or {}, problems)
    return found, problems


def test_a_full_component_validates_with_seconds_and_bytes():
    (web,), problems = validate(
        "components",
        """
        - name: web
          description: The site
          checks:
            - {type: http, url: "https://example.org/health", contains: ok, timeout: 5s}
            - {type: tcp, host: 127.0.0.1, port: 5432}
            - {type: process, name: nginx}
            - {type: process, pidfile: /run/nginx.pid, label: pid}
            - {type: systemd, unit: nginx.service}
            - {type: docker, container: web-1}
            - {type: disk, path: /var/lib, max_used_percent: 90}
            - {type: command, command: "test -e /etc/hostname", timeout: 1m}
          backup: {path: /srv/backups/web, glob: "web-*.tar.gz", max_age: 2d, min_size: 10KB,
                   checksum: sha256}
        """,
    )
    assert problems == []
    assert isinstance(web, Component)
    http, tcp = web.checks[0], web.checks[1]
    assert (http.status, http.method, http.timeout, http.follow_redirects) == (200, "GET", 5, True)
    assert tcp.timeout == 5
    assert web.checks[-1].timeout == 60
    assert web.backup.max_age == 2 * 86400 and web.backup.min_size == 10 * 1024
    assert (web.backup.type, web.backup.checksum) == ("auto", "sha256")
    labels = [label for label, _ in web.labelled_checks()]
    assert labels == ["http", "tcp", "process", "pid", "systemd", "docker", "disk", "command"]


def test_repeated_check_types_are_numbered_and_models_are_frozen():
    (web,), problems = validate(
        "components",
        """
        - name: web
          checks: [{type: tcp, host: a, port: 1}, {type: tcp, host: b, port: 2}]
        """,
    )
    assert problems == []
    assert [label for label, _ in web.labelled_checks()] == ["tcp", "tcp-2"]
    with pytest.raises(ValueError):
        web.name = "other"


def test_backup_defaults():
    (db,), _ = validate("components", "[{name: db, backup: {path: /srv/db}}]")
    assert (db.backup.glob, db.backup.max_age, db.backup.min_size) == ("*", 26 * 3600, 1)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (0, 0),
        (2048, 2048),
        ("1", 1),
        ("10KB", 10240),
        ("5 MB", 5 * 1024**2),
        ("1GiB", 1024**3),
        ("1.5k", 1536),
    ],
)
def test_sizes(value, size):
    assert parse_size(value) == size


@pytest.mark.parametrize("value", ["ten", "-1", "5 XB", True, -3, "1.5.2MB"])
def test_bad_sizes(value):
    with pytest.raises(ValueError, match="expected a size"):
        parse_size(value)


def test_every_problem_is_reported_at_once_with_file_entry_and_field():
    _, problems = validate(
        "components",
        """
        - name: web
          checks:
            - {type: http, url: "ftp://admin:hunter22@example.org/"}
            - {type: htp, url: "http://x/"}
            - {url: "http://x/"}
            - {type: tcp, host: db}
            - {type: http, url: "http://x/", timout: 5s}
          backup: {path: /srv, max_agee: 1d}
        - {nmae: db}
        """,
    )
    assert problems == [
        "tasks.yaml: components[0] (web): checks[0].url: expected an http:// or https:// URL"
        " with a host, got 'ftp://admin:***@example.org/'",
        "tasks.yaml: components[0] (web): checks[1].type: unknown check type 'htp'"
        " (did you mean 'http'?); expected one of http, tcp, process, systemd, docker, disk,"
        " command",
        "tasks.yaml: components[0] (web): checks[2].type: required, one of http, tcp, process,"
        " systemd, docker, disk, command",
        "tasks.yaml: components[0] (web): checks[3].port: required",
        "tasks.yaml: components[0] (web): checks[4].timout: unknown key (did you mean 'timeout'?)",
        "tasks.yaml: components[0] (web): backup.max_agee: unknown key (did you mean 'max_age'?)",
        "tasks.yaml: components[1]: name: required",
        "tasks.yaml: components[1]: nmae: unknown key (did you mean 'name'?)",
    ]
    assert not any("hunter22" in problem for problem in problems)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{name: w, checks: [{type: http, url: 'not a url'}]}", "checks[0].url: must not contain"),
        ("{name: w, checks: [{type: http, url: 'http:///path'}]}", "with a host"),
        ("{name: w, checks: [{type: http, url: 'http://x:99999/'}]}", "not a valid URL"),
        ("{name: w, checks: [{type: http, url: 'http://x/', status: 99}]}", "checks[0].status"),
        ("{name: w, checks: [{type: http, url: 'http://x/', timeout: 10}]}", "expected a duration"),
        ("{name: w, checks: [{type: tcp, host: 'a b', port: 1}]}", "not a valid host"),
        ("{name: w, checks: [{type: process}]}", "exactly one of name or pidfile (neither"),
        ("{name: w, checks: [{type: process, name: a, pidfile: /p}]}", "(both given)"),
        ("{name: w, checks: [{type: process, pidfile: run/a.pid}]}", "absolute path"),
        ("{name: w, checks: [{type: process, cmdline: x}]}", "neither given"),
        ("{name: w, checks: [{type: systemd, unit: '--all'}]}", "not a valid systemd unit"),
        ("{name: w, checks: [{type: docker, container: '-x'}]}", "not a valid container"),
        ("{name: w, checks: [{type: disk, path: /, max_used_percent: 0}]}", "max_used_percent"),
        ("{name: w, checks: [{type: disk, path: /, max_used_percent: 101}]}", "max_used_percent"),
        ("{name: w, checks: [{type: command, command: '  '}]}", "checks[0].command"),
        ("{name: 'bad name'}", "name: must be 1-64"),
        ("{name: w, backup: {path: /b, glob: ../x}}", "backup.glob"),
        ("{name: w, backup: {path: b}}", "backup.path: must be an absolute path"),
        ("{name: w, backup: {path: /b, type: zip}}", "backup.type"),
        ("{name: w, backup: {path: /b, min_size: lots}}", "backup.min_size: expected a size"),
        (
            "{name: w, checks: [{type: tcp, host: a, port: 1, label: x}, "
            "{type: tcp, host: b, port: 2, label: x}]}",
            "two checks are labelled x",
        ),
        ("{name: w, checks: [x]}", "checks[0]"),
    ],
)
def test_component_problems(entry, message):
    found, problems = validate("components", f"[{entry}]")
    assert found == ()
    assert len(problems) >= 1
    assert message in problems[0], problems


def test_unset_variables_are_named_with_their_full_path_and_defaults_apply():
    _, problems = validate(
        "components",
        """
        - name: web
          checks:
            - {type: http, url: "${SITE}/health"}
            - {type: command, command: "check ${HOST:-localhost} ${PORT}"}
        """,
        {"SITE": ""},
    )
    assert problems == [
        "tasks.yaml: components[0] (web): checks[1].command: ${PORT} is not set in config.env or"
        " the environment"
    ]
    (web,), problems = validate(
        "components",
        "[{name: web, checks: [{type: http, url: '${SITE}/h'}, {type: command, command: 'c ${H:-x}'}]}]",
        {"SITE": "http://127.0.0.1:8080"},
    )
    assert problems == []
    assert web.checks[0].url == "http://127.0.0.1:8080/h"
    assert web.checks[1].command == "c x"


def test_duplicate_names_are_an_error_even_when_one_copy_is_invalid():
    found, problems = validate(
        "components", "[{name: db, backup: {path: /a}}, {name: db, backup: {path: b}}]"
    )
    assert [c.name for c in found] == ["db"]
    assert any("components[1] (db): name: duplicate name" in p for p in problems)


def test_section_shapes():
    assert validate("components", "null") == ((), [])
    assert validate("components", "{name: web}")[1] == [
        "tasks.yaml: components: expected a list, got dict"
    ]
    assert validate("integrations", "[web]")[1] == [
        "tasks.yaml: integrations[0]: expected a mapping of fields, got str"
    ]


def test_integrations_with_headers_from_variables():
    (api, hook), problems = validate(
        "integrations",
        """
        - name: crm
          http:
            method: post
            url: https://crm.example.org/api/refresh
            headers: {Authorization: "Bearer ${CRM_TOKEN}", X-Count: 3}
            status: 204
            body: '{"full": true}'
        - {name: hook, command: /opt/agency_stack/bin/refresh-hooks, timeout: 2m}
        """,
        {"CRM_TOKEN": "abc123"},
    )
    assert problems == []
    assert isinstance(api, Integration)
    assert api.http.method == "POST" and api.http.timeout == 30 and api.http.status == 204
    assert api.http.headers == {"Authorization": "Bearer abc123", "X-Count": "3"}
    assert hook.command and hook.timeout == 120


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{name: a}", "give exactly one of http or command (neither given)"),
        ("{name: a, command: x, http: {url: 'http://x/'}}", "(both given)"),
        ("{name: a, http: {url: 'http://x/', method: FETCH}}", "http.method"),
        (
            "{name: a, http: {url: 'http://x/', header: {}}}",
            "http.header: unknown key (did you mean 'headers'?)",
        ),
        (
            "{name: a, http: {url: 'http://x/', headers: {'Bad Name': x}}}",
            "not a valid header name",
        ),
        ("{name: a, htp: {url: 'http://x/'}}", "htp: unknown key (did you mean 'http'?)"),
    ],
)
def test_integration_problems(entry, message):
    found, problems = validate("integrations", f"[{entry}]")
    assert found == ()
    assert any(message in p for p in problems), problems


def test_a_header_value_never_appears_in_a_message():
    _, problems = validate(
        "integrations",
        '[{name: a, http: {url: "http://x/", headers: {Authorization: "Bearer s3cr3t\\nX: y"}}}]',
    )
    assert len(problems) == 1 and "newline" in problems[0]
    assert "s3cr3t" not in problems[0]


def test_redact_url_and_url_secrets():
    assert (
        redact_url("https://bob:p%40ss@h.example:8443/x?y=1")
        == "https://bob:***@h.example:8443/x?y=1"
    )
    assert redact_url("http://h/x") == "http://h/x"
    assert set(url_secrets("https://bob:p%40ss@h/")) == {"p@ss", "p%40ss"}
    assert url_secrets("http://h/") == []


def _components(text: str) -> tuple:
    found, problems = validate("components", text)
    assert problems == []
    return found


COMPONENTS = """
- {name: web, checks: [{type: tcp, host: a, port: 1}]}
- {name: db, checks: [{type: tcp, host: b, port: 2}], backup: {path: /b}}
- {name: files, backup: {path: /f}}
"""


def test_selection():
    items = _components(COMPONENTS)
    names = lambda chosen: [c.name for c in chosen]  # noqa: E731
    assert names(cli.select("health", items, "all", "X")) == ["web", "db"]
    assert names(cli.select("backup", items, " ALL ", "X")) == ["db", "files"]
    assert names(cli.select("backup", items, "", "X")) == ["db", "files"]
    assert names(cli.select("health", items, "db, web,db", "X")) == ["db", "web"]
    with pytest.raises(UsageError, match="HEALTH_CHECK_COMPONENTS: unknown component cache, x"):
        cli.select("health", items, "web,cache x", "HEALTH_CHECK_COMPONENTS")
    with pytest.raises(UsageError, match="--components: files: no checks: section"):
        cli.select("health", items, "files", "--components")


def result(component: str, check: str, ok: bool, detail: str = "d") -> CheckResult:
    return CheckResult("health", component, check, ok, detail, 0.01)


def test_report_lines_and_summary_name_the_failing_components():
    lines = cli.report_lines(
        "health",
        [
            result("web", "http", True, "200 in 0.02s"),
            result("db", "tcp", False, "refused"),
            result("db", "disk", False, "full"),
            result("mail", "process", False, "none"),
        ],
        FILE,
    )
    assert lines == [
        "OK   web/http      200 in 0.02s",
        "FAIL db/tcp        refused",
        "FAIL db/disk       full",
        "FAIL mail/process  none",
        "health: 4 checks, 3 failed: db, mail",
    ]
    assert cli.summary("backup", [result("a", "age", True)]) == "backup: 1 check, all ok"
    assert cli.report_lines("health", [], FILE) == [
        "health: nothing to check (no component declares checks: in tasks.yaml)"
    ]


def test_secrets_are_masked_in_details(tmp_path):
    settings = load_settings(
        environ={"AGENCY_ROOT": str(tmp_path), "API_TOKEN": "tok-123456", "PLAIN": "visible"}
    )
    (integration,), _ = validate(
        "integrations",
        '[{name: a, http: {url: "https://u:pw-9999@h/", headers: {X-Api-Key: k-abcdef, Accept: text/plain}}}]',
    )
    secrets = cli.secrets_for(settings, [integration])
    detail = "tok-123456 pw-9999 k-abcdef text/plain visible\nsecond line"
    (cleaned,) = cli.redact_results([result("a", "http", False, detail)], secrets)
    assert cleaned.detail == "*** *** *** text/plain visible | second line"
