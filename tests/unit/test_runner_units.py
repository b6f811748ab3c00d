"""Pure pieces of the run path: the streaming Redactor and retry_delay. No processes, no disk."""

from __future__ import annotations

import itertools

import pytest

from agency_cron.alerts import redact
from agency_cron.runner import Redactor, retry_delay

SECRET = "s3cr3t-value-123"


def streamed(secrets: list[str], chunks: list[bytes]) -> bytes:
    redactor = Redactor(secrets)
    return b"".join(redactor.feed(chunk) for chunk in chunks) + redactor.flush()


def whole(secrets: list[str], data: bytes) -> bytes:
    """What one-shot redaction of the whole stream gives (alerts.redact, longest first)."""
    return redact(data.decode(), secrets).encode()


def splits(data: bytes, parts: int):
    """Every way to cut `data` into `parts` consecutive chunks (empty chunks included)."""
    for cuts in itertools.combinations_with_replacement(range(len(data) + 1), parts - 1):
        edges = (0, *cuts, len(data))
        yield [data[a:b] for a, b in itertools.pairwise(edges)]


def test_a_secret_split_at_every_offset_is_masked():
    data = f"token={SECRET} and again {SECRET}!\n".encode()
    expected = b"token=*** and again ***!\n"
    for cut in range(len(data) + 1):
        assert streamed([SECRET], [data[:cut], data[cut:]]) == expected, cut


def test_a_secret_cut_into_three_chunks_at_every_pair_of_offsets_is_masked():
    data = f"<{SECRET}>".encode()
    for chunks in splits(data, 3):
        assert streamed([SECRET], chunks) == b"<***>", chunks


def test_a_secret_fed_one_byte_at_a_time_is_masked():
    data = f"a{SECRET}b{SECRET}{SECRET}c".encode()
    assert streamed([SECRET], [bytes([b]) for b in data]) == b"a***b******c"


def test_output_without_secrets_passes_unchanged_whatever_the_chunks():
    data = b"plain output\nwith lines\n" * 3
    for cut in range(len(data) + 1):
        assert streamed([SECRET], [data[:cut], data[cut:]]) == data
    assert streamed([], [data[:5], data[5:]]) == data


def test_several_secrets_of_different_lengths_at_every_offset():
    secrets = ["pw-42", SECRET, "another-much-longer-secret-value"]
    data = f"x{secrets[2]}y pw-42 z{SECRET}\n".encode()
    expected = b"x***y *** z***\n"
    assert whole(secrets, data) == expected
    for cut in range(len(data) + 1):
        assert streamed(secrets, [data[:cut], data[cut:]]) == expected, cut


def test_a_secret_that_contains_a_shorter_one_is_masked_whole_at_every_offset():
    # e.g. DB_PASSWORD and a DB_URL_SECRET holding it: cut anywhere, the stream must read as the
    # whole output redacted at once, never show the rest of the longer secret.
    short, long = "hunter2", "postgres://app:hunter2@db-internal-7781/prod"
    data = f"connecting to {long} now\n".encode()
    expected = b"connecting to *** now\n"
    assert whole([short, long], data) == expected
    leaks = []
    for cut in range(len(data) + 1):
        got = streamed([short, long], [data[:cut], data[cut:]])
        if got != expected:
            leaks.append((cut, got))
    assert leaks == []


def test_flush_returns_the_held_back_tail_once():
    redactor = Redactor([SECRET])
    assert redactor.feed(b"ab") == b""  # held back: could be the start of a secret
    assert redactor.flush() == b"ab"
    assert redactor.flush() == b""


# --------------------------------------------------------------------------- retry_delay

SAMPLES = 200


def spec(delay: int, backoff: str = "fixed", cap: int = 3600) -> dict:
    return {"retry_delay": delay, "retry_backoff": backoff, "retry_max_delay": cap}


@pytest.mark.parametrize("attempt", [1, 2, 5, 50])
def test_fixed_delay_is_the_delay_with_ten_percent_jitter(attempt):
    delays = [retry_delay(spec(60), attempt) for _ in range(SAMPLES)]
    assert all(54.0 <= d <= 66.0 for d in delays)
    assert len(set(delays)) > 1, "jitter: runs retrying together do not stay in step"


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5])
def test_exponential_delay_doubles_per_attempt(attempt):
    base = 10 * 2 ** (attempt - 1)
    for _ in range(SAMPLES):
        assert base * 0.9 <= retry_delay(spec(10, "exponential"), attempt) <= base * 1.1


def test_exponential_delay_is_capped_by_retry_max_delay():
    # README: "retry_max_delay: cap on the delay". Jitter may shorten, never exceed it.
    for attempt in (5, 6, 10, 100):
        for _ in range(SAMPLES):
            delay = retry_delay(spec(10, "exponential", cap=30), attempt)
            assert 27.0 <= delay <= 30.0, (attempt, delay)


def test_fixed_delay_longer_than_the_cap_is_capped():
    for _ in range(SAMPLES):
        assert retry_delay(spec(600, "fixed", cap=120), 1) <= 120.0


def test_zero_delay_is_zero():
    assert retry_delay(spec(0), 1) == 0.0
    assert retry_delay(spec(0, "exponential"), 7) == 0.0
