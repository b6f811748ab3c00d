"""logrotate.errors against the real logrotate: what install and doctor both read."""

from __future__ import annotations

import shutil
from pathlib import Path

from agency_cron import logrotate

# A test dependency (.ci/run and `make test-deps` install it): no skip when it is missing.
BINARY = shutil.which("logrotate") or "/usr/sbin/logrotate"


def test_a_valid_config_has_no_errors_even_before_its_logs_exist(tmp_path):
    text = f"{tmp_path}/never-written/*.log {{\n  daily\n  rotate 7\n  missingok\n}}\n"
    assert logrotate.errors(BINARY, text.encode(), Path("/etc/logrotate.d/agency")) == []


def test_an_unknown_directive_is_an_error_naming_the_real_path(tmp_path):
    shown = Path("/etc/logrotate.d/agency")
    text = f"{tmp_path}/*.log {{\n  daily\n  rotaet 7\n}}\n"
    problems = logrotate.errors(BINARY, text.encode(), shown)
    assert problems and all(line.lower().startswith("error:") for line in problems)
    assert "rotaet" in problems[0] and str(shown) in problems[0]
    assert "agency-cron-logrotate-" not in " ".join(problems)  # never the temporary copy


def test_debug_mode_rotates_nothing(tmp_path):
    text = f"{tmp_path}/*.log {{\n  daily\n}}\n"
    (tmp_path / "a.log").write_text("x\n")
    logrotate.errors(BINARY, text.encode(), tmp_path / "agency")
    assert not (tmp_path / "a.log.1").exists()  # -d rotates nothing
