"""agency_cron.secrets: the one rule for which values are secret and how they are masked."""

from __future__ import annotations

import logging

from hypothesis import given
from hypothesis import strategies as st

from agency_cron.secrets import (
    MARKER,
    RecordRedactor,
    Redactor,
    is_secret_name,
    masked_url,
    password_of_url,
    redact,
    secret_values,
    secrets_of_urls,
    url_credentials,
    without_password,
    worth_masking,
)

SECRET = "s3cr3t-value-123"


def test_secret_names_are_matched_whatever_their_case():
    for name in ("API_TOKEN", "api_token", "Db_Password", "hmac_secret", "aws_access_key"):
        assert is_secret_name(name), name
    for name in ("TOKENS", "KEYBOARD", "PASSWORD_FILE", "HOME", "MONKEY"):
        assert not is_secret_name(name), name


def test_secret_values_skip_short_values_and_public_names():
    variables = {"api_token": SECRET, "DB_PASSWORD": "no", "HOME": "/root", "X_KEY": "abcd"}
    assert secret_values(variables) == ["abcd", SECRET]


def test_worth_masking_keeps_four_characters_and_more_once():
    assert worth_masking(["abc", "abcd", "abcd", ""]) == ["abcd"]


def test_url_credentials_leave_the_scheme_and_the_host():
    url = "json://bob:hunter2pass@hooks.example.com:8443/hooks/tok3n-in-the-path"
    assert set(url_credentials(url)) == {"hunter2pass", "tok3n-in-the-path"}
    assert masked_url(url) == f"json://bob:{MARKER}@hooks.example.com:8443/hooks/{MARKER}"
    assert url in secrets_of_urls([url])  # the whole URL is masked wherever it appears


def test_a_port_is_no_secret_but_a_token_posing_as_a_port_is():
    assert secrets_of_urls(["gotify://127.0.0.1:8080/"]) == ["gotify://127.0.0.1:8080/"]
    assert "1234567890abc" in secrets_of_urls(["tgram://bot:1234567890abc/chat"])


def test_userinfo_password_of_a_check_url():
    assert set(password_of_url("https://bob:p%40ss@h.example/")) == {"p@ss", "p%40ss"}
    assert without_password("https://bob:p%40ss@h.example/x") == f"https://bob:{MARKER}@h.example/x"
    assert without_password("http://[bad") == "<invalid URL>"


def test_redact_masks_the_longest_secret_whole():
    assert redact("a-abcd-abcdefgh-b", ["abcd", "abcdefgh"]) == f"a-{MARKER}-{MARKER}-b"


def test_log_records_are_masked_args_and_all(caplog):
    logger = logging.getLogger("agency-cron-test-secrets")
    mask = RecordRedactor([SECRET])
    logger.addFilter(mask)
    try:
        with caplog.at_level(logging.INFO, logger=logger.name):
            logger.info("sent to %s", f"https://h/{SECRET}")
    finally:
        logger.removeFilter(mask)
    assert caplog.messages == [f"sent to https://h/{MARKER}"]


def streamed(secrets: list[str], chunks: list[bytes]) -> bytes:
    redactor = Redactor(secrets)
    return b"".join(redactor.feed(chunk) for chunk in chunks) + redactor.flush()


text = st.text(alphabet="ab-\n\u00e9", max_size=40)


@given(
    before=text,
    after=text,
    secret=st.text(alphabet="ab\u00e9xy", min_size=4, max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=6),
)
def test_a_secret_split_at_any_chunk_boundary_never_gets_through(before, after, secret, cuts):
    data = f"{before}{secret}{after}{secret}".encode()
    edges = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    chunks = [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]
    out = streamed([secret], chunks)
    assert secret.encode() not in out
    assert out == redact(data.decode(), [secret]).encode()  # the same as masking it whole
