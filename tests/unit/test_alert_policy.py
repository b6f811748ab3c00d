"""Which alert a finished run gets (decide), and what is masked before anything leaves (redact,
secrets_of_urls). Pure functions: no network, no Apprise."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agency_cron.alerts import decide
from agency_cron.secrets import MARKER as REDACTED
from agency_cron.secrets import redact, secrets_of_urls

STATUSES = ["success", "failed", "timeout", "skipped", "killed"]
PREVIOUS = [None, *STATUSES]
POLICIES = ["never", "on_failure", "on_change", "always"]

# policy, status, previous, alert_on_failure, force -> expected
DECISIONS = [
    # --alert: a failure (or a kill) alerts whatever the policy and ALERT_ON_FAILURE say
    ("never", "failed", None, False, True, "failure"),
    ("never", "timeout", "failed", False, True, "failure"),
    ("on_change", "failed", "failed", True, True, "failure"),
    ("on_failure", "killed", "success", False, True, "failure"),
    ("always", "skipped", "failed", True, True, None),
    ("never", "success", "failed", False, True, None),
    ("on_failure", "success", "failed", True, True, "recovery"),
    # ALERT_ON_FAILURE=false: nothing without --alert
    ("on_failure", "failed", None, False, False, None),
    ("on_change", "failed", "success", False, False, None),
    ("always", "success", None, False, False, None),
    ("always", "success", "failed", False, False, None),
    # never
    ("never", "failed", None, True, False, None),
    ("never", "timeout", "success", True, False, None),
    ("never", "success", "failed", True, False, None),
    # on_failure
    ("on_failure", "failed", None, True, False, "failure"),
    ("on_failure", "timeout", "success", True, False, "failure"),
    ("on_failure", "failed", "failed", True, False, "failure"),
    ("on_failure", "success", "failed", True, False, "recovery"),
    ("on_failure", "success", "timeout", True, False, "recovery"),
    ("on_failure", "success", "success", True, False, None),
    ("on_failure", "success", None, True, False, None),
    ("on_failure", "success", "killed", True, False, None),
    ("on_failure", "killed", "success", True, False, None),
    ("on_failure", "skipped", "failed", True, False, None),
    # on_change: one alert when it starts failing, one when it recovers
    ("on_change", "failed", None, True, False, "failure"),
    ("on_change", "failed", "success", True, False, "failure"),
    ("on_change", "timeout", "killed", True, False, "failure"),
    ("on_change", "failed", "failed", True, False, None),
    ("on_change", "timeout", "failed", True, False, None),
    ("on_change", "failed", "timeout", True, False, None),
    ("on_change", "success", "failed", True, False, "recovery"),
    ("on_change", "success", "timeout", True, False, "recovery"),
    ("on_change", "success", "success", True, False, None),
    ("on_change", "success", None, True, False, None),
    ("on_change", "killed", "failed", True, False, None),
    # always
    ("always", "failed", "failed", True, False, "failure"),
    ("always", "timeout", None, True, False, "failure"),
    ("always", "success", "timeout", True, False, "recovery"),
    ("always", "success", "success", True, False, "success"),
    ("always", "success", None, True, False, "success"),
    ("always", "success", "killed", True, False, "success"),
    ("always", "killed", None, True, False, None),
    ("always", "skipped", None, True, False, None),
]


@pytest.mark.parametrize(
    ("policy", "status", "previous", "enabled", "force", "expected"), DECISIONS
)
def test_decide_table(policy, status, previous, enabled, force, expected):
    assert decide(policy, status, previous, enabled, force) == expected


@pytest.mark.parametrize(
    ("policy", "status", "previous", "enabled", "force"),
    list(itertools.product(POLICIES, STATUSES, PREVIOUS, [False, True], [False, True])),
)
def test_decide_rules_hold_for_every_combination(policy, status, previous, enabled, force):
    kind = decide(policy, status, previous, enabled, force)
    assert kind in (None, "failure", "recovery", "success")
    if status == "skipped" or (not enabled and not force):
        assert kind is None
    if force and status in ("failed", "timeout", "killed"):
        assert kind == "failure"
    if kind == "recovery":
        assert status == "success" and previous in ("failed", "timeout")
    if kind == "success":
        assert policy == "always" and enabled


def test_decide_rejects_an_unknown_policy():
    with pytest.raises(ValueError, match="sometimes"):
        decide("sometimes", "failed", None, True, False)


def test_redact_masks_every_occurrence_longest_first():
    text = "key abcdefgh, again abcdefgh, prefix abcd"
    assert redact(text, ["abcd", "abcdefgh"]) == "key ***, again ***, prefix ***"


def test_redact_ignores_empty_secrets():
    assert redact("nothing to hide", ["", "absent"]) == "nothing to hide"
    assert redact("nothing to hide", []) == "nothing to hide"


@given(
    secrets=st.lists(st.text(st.characters(blacklist_characters="*"), min_size=1), max_size=4),
    filler=st.lists(st.text(max_size=8), min_size=1, max_size=6),
)
def test_redact_leaves_no_secret(secrets, filler):
    # Secrets woven between arbitrary text; "***" cannot recreate a secret without a "*".
    text = "".join(f + s for f, s in zip(filler, itertools.cycle(secrets or [""])))
    masked = redact(text, secrets)
    assert not any(secret in masked for secret in secrets)


def test_secrets_of_userinfo_urls():
    url = "json://user:hunter2pass@hooks.example.com:8080/"
    found = secrets_of_urls([url])
    assert {url, "user", "hunter2pass"} <= set(found)
    assert "hooks.example.com" not in found and "hooks.example.com:8080" not in found


def test_secrets_of_token_urls():
    found = set(
        secrets_of_urls(
            [
                "tgram://123456789:AAHdefGhIjklMnop/987654321",
                "discord://4815162342/webhook_tok3n_xyz",
            ]
        )
    )
    assert {"123456789:AAHdefGhIjklMnop", "AAHdefGhIjklMnop", "987654321"} <= found
    assert {"4815162342", "webhook_tok3n_xyz"} <= found


def test_secrets_of_urls_keep_host_names_and_ports():
    found = secrets_of_urls(["json://localhost:8080/", "gotify://127.0.0.1:8080/"])
    assert not {"localhost", "8080", "127.0.0.1"} & set(found)
    assert "gotifyhost" in secrets_of_urls(["gotify://gotifyhost:8080/"])  # could be a token


def test_secrets_of_query_values():
    url = "json://hooks.example.com/?token=abcd1234&apikey=zz99zz99&format=markdown&Secret=qwerty"
    found = secrets_of_urls([url])
    assert {"abcd1234", "zz99zz99", "qwerty"} <= set(found)
    assert "markdown" not in found


def test_secrets_of_urls_are_also_found_decoded():
    found = secrets_of_urls(["mailto://me:p%40ss%3Aword@mail.example.com"])
    assert {"p%40ss%3Aword", "p@ss:word"} <= set(found)


def test_secrets_of_urls_skip_short_strings_and_short_path_segments():
    found = secrets_of_urls(["json://ab:cd@hooks.example.com/short/?key=xyz"])
    assert found == ["json://ab:cd@hooks.example.com/short/?key=xyz"]
    assert secrets_of_urls([]) == []


def test_redacting_with_url_secrets_hides_the_credentials():
    url = "json://user:hunter2pass@hooks.example.com/tok3n-in-the-path"
    text = f"posting to {url}; password hunter2pass; path tok3n-in-the-path"
    masked = redact(text, secrets_of_urls([url]))
    assert "hunter2pass" not in masked and "tok3n-in-the-path" not in masked
    assert masked.count(REDACTED) == 3


def test_importing_alerts_does_not_import_apprise():
    # The runner imports alerts on every run; Apprise costs ~120 ms and must wait for a send.
    root = Path(__file__).resolve().parents[2]
    code = "import sys, agency_cron.alerts; sys.exit('apprise' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(root)}
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 0
