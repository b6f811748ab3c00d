"""agency_cron.fields on its own: names, durations, ${VAR} expansion, secret references,
"did you mean", the wording of problems; and that it stays a leaf (no pydantic, no
manifest), so checks/models.py uses it without importing manifest.py."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, ValidationError

from agency_cron import fields
from agency_cron.fields import (
    NAME_PATTERN,
    UnsetVariable,
    describe,
    did_you_mean,
    expand,
    parse_duration,
    plain,
    secret_references,
)

# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["a", "A", "0", "backup", "db-dump_2", "x" * 64, "9lives"])
def test_names_that_are_accepted(name):
    assert NAME_PATTERN.match(name)


@pytest.mark.parametrize(
    "name",
    ["", "-a", "_a", "a.b", "a/b", "..", "a b", "x" * 65, "é", "a\n", "a$", "١"],  # noqa: RUF001
)
def test_names_that_are_refused(name):
    assert not NAME_PATTERN.match(name)


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("5m", 300), ("2h", 7200), ("1d", 86400), ("1d2h3m4s", 93784), (" 1h ", 3600)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("value", ["", "30", 30, "1.5h", "5M", "30m1h", "-5m", "5 m", None, True])
def test_bad_durations_say_which_forms_are_expected(value):
    with pytest.raises(ValueError, match=r"^expected a duration like 30s, 5m, 2h or 1d, got "):
        parse_duration(value)


def test_a_long_bad_duration_is_quoted_cut():
    with pytest.raises(ValueError) as info:
        parse_duration("9" * 10_000 + "x")
    assert len(str(info.value)) < 200


# --------------------------------------------------------------------------- ${VAR}

VARIABLES = {"HOST": "db.example", "EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "result"),
    [
        ("${HOST}", "db.example"),
        ("${EMPTY}", ""),
        ("${EMPTY:-x}", "x"),
        ("${UNSET:-x}", "x"),
        ("$$", "$"),
        ("$${HOST}", "${HOST}"),
        ("$HOST", "$HOST"),
    ],
)
def test_expand(text, result):
    assert expand(text, VARIABLES) == result


def test_expand_names_the_field_of_a_nested_value():
    with pytest.raises(UnsetVariable) as info:
        expand({"env": {"URL": "pg://${NOPE}"}}, VARIABLES)
    assert info.value.args == ("env: ${NOPE} is not set in config.env or the environment",)


def test_an_unset_variable_is_not_a_value_error():
    # Raised outside pydantic, caught by the loaders by its own name: a ValueError would be
    # taken for a field's validation error if it were ever raised inside a validator.
    assert not issubclass(UnsetVariable, ValueError)


@given(st.text(st.characters(blacklist_characters="$")))
def test_text_without_a_dollar_is_left_alone(text):
    assert expand(text, {}) == text


@pytest.mark.parametrize(
    ("task", "found"),
    [
        ({"command": "curl -H ${API_TOKEN} ${HOST}"}, [("command", "API_TOKEN")]),
        ({"script": "x=${db_password}"}, [("script", "db_password")]),  # any case
        ({"description": "${A_SECRET} ${A_SECRET}"}, [("description", "A_SECRET")]),  # once
        ({"command": "echo $API_TOKEN"}, []),  # the shell's, not expanded at load
        ({"command": "echo $${API_TOKEN}"}, []),
        ({"env": {"X": "${API_TOKEN}"}}, []),  # env is where secrets belong
        ({"command": ["${API_TOKEN}"]}, []),  # not a string: the model refuses it anyway
        (
            {"log": "${LOG_KEY}.log", "working_dir": "/srv/${DIR_TOKEN}"},
            [("working_dir", "DIR_TOKEN"), ("log", "LOG_KEY")],
        ),
    ],
)
def test_secret_references_in_fields_stored_in_clear(task, found):
    assert secret_references(task) == found


def test_the_clear_fields_are_the_ones_config_names():
    from agency_cron import config

    assert config.CLEAR_FIELDS is fields.CLEAR_FIELDS
    assert config.clear_secret_problem is fields.clear_secret_problem


# --------------------------------------------------------------------------- hints, wording


@pytest.mark.parametrize(
    ("word", "hint"),
    [
        ("comand", " (did you mean 'command'?)"),
        ("shedule", " (did you mean 'schedule'?)"),
        ("zzzz", ""),
        ("c" * 200, ""),  # longer than any field: no difflib at all
        (3, ""),
    ],
)
def test_did_you_mean(word, hint):
    assert did_you_mean(word, ["command", "schedule", "script"]) == hint


@pytest.mark.parametrize(
    ("value", "text"),
    [("schedule", "schedule"), (0, "0"), ("a\nb", "'a\\nb'"), ("x" * 100, None)],
)
def test_plain_keeps_a_name_as_written_unless_it_would_break_the_line(value, text):
    result = plain(value)
    if text is not None:
        assert result == text
    assert result.isprintable() and len(result) < 100


class _Flat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    count: int = 0


def _errors(data: dict) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        _Flat.model_validate(data)
    return info.value


def test_describe_one_line_per_problem_with_hints():
    error = _errors({"count": "many", "nmae": "x", "bad\nkey": 1})
    assert sorted(describe("f.yaml: tasks[0]", error, _Flat.model_fields)) == sorted(
        [
            "f.yaml: tasks[0]: name: required",
            "f.yaml: tasks[0]: count: Input should be a valid integer, unable to parse string"
            " as an integer",
            "f.yaml: tasks[0]: nmae: unknown key (did you mean 'name'?)",
            "f.yaml: tasks[0]: 'bad\\nkey': unknown key",
        ]
    )


def test_describe_drops_pydantics_value_error_prefix():
    from pydantic import field_validator

    class Odd(BaseModel):
        value: int

        @field_validator("value")
        @classmethod
        def _odd(cls, value: int) -> int:
            if value % 2 == 0:
                raise ValueError("must be odd")
            return value

    with pytest.raises(ValidationError) as info:
        Odd.model_validate({"value": 2})
    assert describe("x", info.value, Odd.model_fields) == ["x: value: must be odd"]


# --------------------------------------------------------------------------- a leaf

PROBE = """
import json, sys
import {module}
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("agency_cron", "pydantic")))))
"""


def _imported_by(module: str) -> list[str]:
    """The agency_cron and pydantic modules a fresh interpreter holds after importing one."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(result.stdout)


def test_fields_imports_no_pydantic_and_only_leaves():
    assert _imported_by("agency_cron.fields") == [
        "agency_cron",
        "agency_cron.errors",
        "agency_cron.fields",
        "agency_cron.secrets",
    ]


def test_the_checks_models_do_not_import_the_manifest_loader():
    # The cycle manifest -> checks.models -> manifest is gone: both use fields.py.
    imported = _imported_by("agency_cron.checks.models")
    assert "agency_cron.checks.models" in imported and "agency_cron.fields" in imported
    assert "agency_cron.manifest" not in imported


def test_no_module_imports_a_private_name_of_the_manifest():
    import agency_cron

    sources = list(Path(agency_cron.__file__).parent.rglob("*.py"))
    assert len(sources) > 20
    offenders = [
        f"{path.name}: {alias.name}"
        for path in sources
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.module == "agency_cron.manifest"
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert offenders == []


# --------------------------------------------------------------------------- a final newline


def _patterns():
    from agency_cron.checks import models

    return [
        fields.NAME_PATTERN,
        fields.ENV_KEY,
        models.HEADER_NAME,
        models.UNIT_NAME,
        models.CONTAINER_NAME,
        models.HOST_NAME,
    ]


@pytest.mark.parametrize("index", range(6))
def test_no_name_pattern_lets_a_final_newline_through(index):
    # Python's `$` matches before a final newline: "a\n" passed every one of these once.
    pattern = _patterns()[index]
    assert pattern.match("a") and not pattern.match("a\n")


def test_a_task_name_ending_in_a_newline_is_refused_in_one_line(tmp_path):
    from agency_cron.config import load_settings
    from agency_cron.errors import ConfigError
    from agency_cron.manifest import load_manifest

    settings = load_settings(environ={"AGENCY_ROOT": str(tmp_path), "STATE_DIR": str(tmp_path)})
    manifest = tmp_path / "tasks.json"
    task = {"name": "backup\n", "schedule": "@daily", "command": "true", "env": {"A\n": "1"}}
    manifest.write_text(json.dumps({"tasks": [task]}))
    with pytest.raises(ConfigError) as info:
        load_manifest(manifest, settings)
    assert all("\n" not in problem for problem in info.value.problems)
    assert sorted(p.split(": ", 3)[2] for p in info.value.problems) == ["env", "name"]
