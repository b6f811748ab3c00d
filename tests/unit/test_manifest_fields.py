"""manifest.py's field rules on their own: durations, ${VAR} expansion, "did you mean".

parse_duration and expand are pure and called directly; the hints are read through the
public loader (load_manifest), whose messages are what an operator sees.
"""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agency_cron.config import load_settings
from agency_cron.errors import ConfigError
from agency_cron.manifest import expand, load_manifest, parse_duration

# --------------------------------------------------------------------------- parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("5m", 300),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        ("1d2h3m4s", 93784),
        ("0s", 0),
        ("00m", 0),
        (" 10m ", 600),
        ("1d0s", 86400),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", " ", "30", 30, 1.5, "1.5h", "5M", "1H", "1h 30m", "30m1h", "-5m", "m", "5 m", "5min",
     "P1D", None, True],
)  # fmt: skip
def test_bad_durations_name_the_forms_and_the_value(text):
    with pytest.raises(ValueError, match=r"expected a duration like 30s, 5m, 2h or 1d, got"):
        parse_duration(text)


@given(
    days=st.integers(0, 400),
    hours=st.integers(0, 99),
    minutes=st.integers(0, 999),
    seconds=st.integers(0, 9999),
    present=st.lists(st.booleans(), min_size=4, max_size=4).filter(any),
)
def test_any_combination_in_order_adds_up(days, hours, minutes, seconds, present):
    parts = zip((days, hours, minutes, seconds), "dhms", present, strict=True)
    text = "".join(f"{n}{unit}" for n, unit, shown in parts if shown)
    use = [
        n if shown else 0 for n, shown in zip((days, hours, minutes, seconds), present, strict=True)
    ]
    assert parse_duration(text) == ((use[0] * 24 + use[1]) * 60 + use[2]) * 60 + use[3]


# --------------------------------------------------------------------------- expand

VARIABLES = {"HOST": "db.example", "EMPTY": "", "DOLLARS": "${HOST} $$"}


@pytest.mark.parametrize(
    ("text", "result"),
    [
        ("${HOST}", "db.example"),
        ("pg://${HOST}:5432", "pg://db.example:5432"),
        ("${EMPTY}", ""),  # set but empty: empty, not an error
        ("${EMPTY:-fallback}", "fallback"),  # :- covers empty as well as unset (as in sh)
        ("${UNSET:-fallback}", "fallback"),
        ("${UNSET:-}", ""),
        ("${HOST:-fallback}", "db.example"),
        ("$$", "$"),
        ("$${HOST}", "${HOST}"),
        ("$$$$", "$$"),
        ("${DOLLARS}", "${HOST} $$"),  # one pass: a value is never expanded again
        ("$HOST", "$HOST"),  # only the braced form is a variable
        ("${HOST", "${HOST"),
        ("${1X}", "${1X}"),
        ("cost: 5$", "cost: 5$"),
        ("", ""),
    ],
)
def test_expand_strings(text, result):
    assert expand(text, VARIABLES) == result


def test_expand_walks_lists_and_mappings_but_not_keys_or_other_values():
    value = {"${HOST}": ["${HOST}", 1, None, True, {"x": "${EMPTY:-e}"}]}
    assert expand(value, VARIABLES) == {"${HOST}": ["db.example", 1, None, True, {"x": "e"}]}


def test_an_unset_variable_is_an_error_naming_the_field_and_the_variable():
    with pytest.raises(Exception, match=r"^command: \$\{NOPE\} is not set in config\.env") as info:
        expand("echo ${NOPE}", VARIABLES, "command")
    assert not isinstance(info.value, ConfigError)  # the loader turns it into one line


@given(st.text(st.characters(blacklist_characters="$")))
def test_text_without_a_dollar_is_left_alone(text):
    assert expand(text, VARIABLES) == text


# --------------------------------------------------------------------------- via the loader


@pytest.fixture
def load(tmp_path):
    """load(yaml_text, **variables) -> Manifest, or the list of problems it raised."""
    settings = load_settings(
        environ={
            "AGENCY_ROOT": str(tmp_path / "agency"),
            "STATE_DIR": str(tmp_path / "state"),
            "DB_HOST": "db.internal",
        }
    )
    manifest = tmp_path / "tasks.yaml"

    def run(text: str):
        manifest.write_text(textwrap.dedent(text))
        try:
            return load_manifest(manifest, settings)
        except ConfigError as exc:
            return [problem.replace(f"{manifest}: ", "") for problem in exc.problems]

    return run


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("comand", " (did you mean 'command'?)"),
        ("Command", " (did you mean 'command'?)"),
        ("shedule", " (did you mean 'schedule'?)"),
        ("timout", " (did you mean 'timeout'?)"),
        ("retry", " (did you mean 'retries'?)"),
        ("tag", " (did you mean 'tags'?)"),
        ("workdir", " (did you mean 'working_dir'?)"),
        ("zzzz", ""),
    ],
)
def test_an_unknown_task_key_gets_a_hint_when_one_is_close(load, key, hint):
    problems = load(f"""
        tasks:
          - {{name: a, schedule: "@daily", command: "true", {key}: 1}}
        """)
    assert problems == [f"tasks[0] (a): {key}: unknown key{hint}"]


@pytest.mark.parametrize(
    ("key", "hint"),
    [("task", " (did you mean 'tasks'?)"), ("default", " (did you mean 'defaults'?)"),
     ("component", " (did you mean 'components'?)"), ("jobs", "")],
)  # fmt: skip
def test_an_unknown_top_level_key_gets_a_hint(load, key, hint):
    problems = load(f"""
        tasks: []
        {key}: 1
        """)
    assert problems == [f"{key}: unknown top-level key{hint}"]


def test_every_problem_of_every_task_at_once(load):
    problems = load("""
        tasks:
          - {name: a, schedule: "@daily", comand: "true"}
          - {name: b, schedule: "@daily", command: "true", timeout: 10 minutes}
          - {name: c, schedule: "@daily", command: "echo ${MISSING}"}
        """)
    assert problems == [
        "tasks[0] (a): comand: unknown key (did you mean 'command'?)",
        "tasks[1] (b): timeout: expected a duration like 30s, 5m, 2h or 1d, got '10 minutes'",
        "tasks[2] (c): command: ${MISSING} is not set in config.env or the environment",
    ]


def test_durations_and_variables_reach_the_task(load):
    manifest = load("""
        defaults: {timeout: 1h30m, env: {A: "1"}}
        tasks:
          - name: a
            schedule: "@daily"
            command: "psql -h ${DB_HOST} -c 'select $$1'"
            retry_delay: 90s
            jitter: 2m
            expect_within: 1d
            env: {B: "${DB_HOST:-none}"}
        """)
    task = manifest.get("a")
    assert task.command == "psql -h db.internal -c 'select $1'"
    assert (task.timeout, task.retry_delay, task.jitter, task.expect_within) == (
        5400,
        90,
        120,
        86400,
    )
    assert task.env == {"A": "1", "B": "db.internal"}


def test_a_zero_timeout_is_refused_but_zero_jitter_is_fine(load):
    base = 'tasks:\n  - {name: a, schedule: "@daily", command: "true", '
    assert load(base + "timeout: 0s}\n") == ["tasks[0] (a): timeout: must be longer than 0s"]
    assert load(base + "jitter: 0s}\n").get("a").jitter == 0


def test_a_folder_of_files_reports_each_file_by_name(tmp_path):
    settings = load_settings(
        environ={"AGENCY_ROOT": str(tmp_path / "agency"), "STATE_DIR": str(tmp_path / "state")}
    )
    folder = tmp_path / "tasks.d"
    folder.mkdir()
    (folder / "a.yaml").write_text('{name: a, schedule: "@daily", comand: "true"}\n')
    (folder / "b.json").write_text(
        '{"name": "b", "schedule": "@daily", "command": "true", "retires": 1}'
    )
    with pytest.raises(ConfigError) as info:
        load_manifest(folder, settings)
    assert info.value.problems == [
        f"{folder / 'a.yaml'}: task (a): comand: unknown key (did you mean 'command'?)",
        f"{folder / 'b.json'}: task (b): retires: unknown key (did you mean 'retries'?)",
    ]
