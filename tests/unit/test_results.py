"""Typed results: one JSON envelope, and the API's models made from the same dataclasses."""

from __future__ import annotations

import dataclasses
import json
import typing

import pytest

from agency_cron import results, statuses
from agency_cron.serve import app

ROW = results.RunRow(
    "3f2a9c01b7de", "2026-12-01T02:00:00+00:00", None, None, None, "running", 1, 1, None, None
)


def test_a_list_stays_a_list_and_each_row_carries_the_version():
    shown = json.loads(results.to_json([ROW, ROW]))
    assert isinstance(shown, list) and len(shown) == 2
    assert all(row["version"] == results.SCHEMA_VERSION for row in shown)
    assert shown[0]["run_id"] == "3f2a9c01b7de" and shown[0]["ping"] is None


def test_an_object_carries_the_version_at_the_top_and_keeps_its_own():
    summary = results.Summary("2026-12-01T02:00:00+00:00", "2026-11-30T02:00:00+00:00", [])
    shown = json.loads(results.to_json(summary))
    assert list(shown) == ["version", "generated_at", "since", "tasks", "host"]
    assert json.loads(results.to_json({"version": 7, "x": 1})) == {"version": 7, "x": 1}


def test_plain_turns_nested_results_into_dicts_and_lists():
    detail = results.RunDetail("r", "t", "success", 0, "a", "b", [ROW], "/log", ["line"])
    data = results.plain(detail)
    assert data["attempts"][0]["status"] == "running" and data["log_excerpt"] == ["line"]


@pytest.mark.parametrize(
    ("model", "cls"),
    [
        (app.Execution, results.RunRow),
        (app.TaskView, results.TaskView),
        (app.RunView, results.RunDetail),
        (app.Overdue, results.Overdue),
    ],
)
def test_the_api_models_have_the_dataclasses_fields_in_order(model, cls):
    assert tuple(model.model_fields) == results.names(cls)


def test_run_started_adds_only_the_url():
    assert tuple(app.RunStarted.model_fields) == (*results.names(results.Started), "run_url")


def test_the_api_narrows_statuses_to_the_vocabulary():
    assert typing.get_args(app.Execution.model_fields["status"].annotation) == statuses.ALL
    schema = app.RunView.model_json_schema()
    assert schema["properties"]["status"]["enum"] == list(statuses.ALL)


def test_results_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ROW.status = "lost"  # type: ignore[misc]
