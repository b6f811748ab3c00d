"""backends/crontab.py on its own: the line helpers and `merge`, the byte-for-byte core.

Until now merge was tested only through the CLI (tests/integration/test_property.py). Here
it meets text directly: foreign lines of any bytes (CRLF, no final newline, non-UTF-8),
managed lines in and out of scope, tasks added, changed and removed. The hypothesis test
builds each crontab from parts whose nature it knows (foreign or managed, and whose), so
the expected result comes from the parts, not from the regular expression under test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agency_cron.backends.crontab import (
    ENCODING,
    entry_line,
    installed_entries,
    is_disabled,
    managed_name,
    merge,
    split_lines,
)

WRAPPERS = Path("/opt/agency_stack/scripts/cronjobs")


def line(name: str, schedule: str = "0 2 * * *", enabled: bool = True, user=None) -> str:
    return entry_line(schedule, WRAPPERS / f"{name}.sh", name, enabled, user)


# --------------------------------------------------------------------------- split_lines


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        ("", []),
        ("\n", [""]),
        ("a", ["a"]),
        ("a\n", ["a"]),
        ("a\n\n", ["a", ""]),
        ("a\nb", ["a", "b"]),
        ("a\r\nb\r\n", ["a\r", "b\r"]),
        # Only "\n" ends a line for cron; str.splitlines() would also split at these.
        (
            "a\x0bb\x0cc\x1cd\x1de\x1ef\x85g\u2028h\u2029i\n",
            ["a\x0bb\x0cc\x1cd\x1de\x1ef\x85g\u2028h\u2029i"],
        ),
    ],
)
def test_split_lines(text, lines):
    assert split_lines(text) == lines


# --------------------------------------------------------------------------- entry_line


def test_entry_line_is_schedule_wrapper_marker():
    assert (
        line("backup")
        == "0 2 * * * /opt/agency_stack/scripts/cronjobs/backup.sh # agency-cron:backup"
    )


def test_a_disabled_entry_is_commented_out():
    assert line("backup", enabled=False) == "# " + line("backup")


def test_a_cron_d_entry_carries_the_user_field():
    assert line("backup", "@daily", user="backup").startswith("@daily backup /opt/")


def test_the_wrapper_path_is_quoted_and_percent_escaped():
    # cron turns an unescaped % into a newline; the shell needs the space quoted.
    text = entry_line("@hourly", Path("/srv/my jobs/50%/t.sh"), "t", True, None)
    assert text == "@hourly '/srv/my jobs/50\\%/t.sh' # agency-cron:t"


@pytest.mark.parametrize(
    "wrapper",
    [
        "/opt/a/t.sh",
        "/opt/with space/t.sh",
        "/opt/quo'te/t.sh",
        "/opt/hash # agency-cron:other/t.sh",
        "/opt/caf\u00e9/t.sh",
        "/opt/tab\there/t.sh",
    ],
)
@pytest.mark.parametrize("enabled", [True, False])
@pytest.mark.parametrize("user", [None, "root"])
def test_entry_lines_are_recognised_as_their_task(wrapper, enabled, user):
    text = entry_line("*/5 * * * *", Path(wrapper), "job-1", enabled, user)
    assert split_lines(text + "\n") == [text]
    assert managed_name(text) == "job-1"
    assert is_disabled(text) is (not enabled)


# --------------------------------------------------------------------------- managed_name


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("0 2 * * * /w.sh # agency-cron:backup", "backup"),
        ("@reboot /w.sh # agency-cron:b_2-x", "b_2-x"),
        ("0 2 * * * /w.sh # agency-cron:backup   ", "backup"),
        ("0 2 * * * /w.sh # agency-cron:backup\r", "backup"),  # a CRLF crontab
        ("# 0 2 * * * /w.sh # agency-cron:backup", "backup"),
        ("#0 2 * * * /w.sh # agency-cron:backup", "backup"),
        ("0 2 * * * /w.sh # agency-cron:" + "n" * 64, "n" * 64),
        # Not ours: no marker, a marker that is not at the end, names the manifest refuses.
        ("0 2 * * * /w.sh", None),
        ("0 5 * * * /usr/bin/backup # agency-cron is great", None),
        ("0 6 * * * /bin/true # agency-cron:", None),
        ("0 6 * * * /bin/true # agency-cron:backup # my note", None),
        ("0 6 * * * /bin/true #agency-cron:backup", None),
        ("0 6 * * * /bin/true # agency-cron:-lead", None),
        ("0 6 * * * /bin/true # agency-cron:a.b", None),
        ("0 2 * * * /w.sh # agency-cron:" + "n" * 65, None),
        ("# agency-cron:backup", None),
        ("", None),
        ("# a comment", None),
        ("MAILTO=ops@example.com", None),
    ],
)
def test_managed_name(text, name):
    assert managed_name(text) == name


@pytest.mark.parametrize(
    ("text", "disabled"),
    [
        ("0 2 * * * /w.sh # agency-cron:backup", False),
        ("# 0 2 * * * /w.sh # agency-cron:backup", True),
        ("#0 2 * * * /w.sh # agency-cron:backup", True),
        ("#   0 2 * * * /w.sh # agency-cron:backup", True),
        ("# 0 2 * * * /someone/else", False),  # a foreign comment is not a disabled task
        ("", False),
    ],
)
def test_is_disabled(text, disabled):
    assert is_disabled(text) is disabled


# --------------------------------------------------------------------------- merge, by example

FOREIGN = "# mine\nMAILTO=ops\n0 4 * * * /usr/local/bin/report > /dev/null 2>&1\n"


def test_new_tasks_go_after_the_foreign_lines():
    desired = {"a": [line("a")], "b": [line("b", "@hourly"), line("b", "@reboot")]}
    merged = merge(FOREIGN, desired, None)
    assert merged == FOREIGN + f"{line('a')}\n{line('b', '@hourly')}\n{line('b', '@reboot')}\n"


def test_a_changed_task_keeps_its_place_among_foreign_lines():
    text = f"# top\n{line('a')}\n# middle\n{line('b')}\n# bottom\n"
    merged = merge(text, {"a": [line("a", "@daily")], "b": [line("b")]}, None)
    assert merged == f"# top\n{line('a', '@daily')}\n# middle\n{line('b')}\n# bottom\n"


def test_a_task_with_more_lines_grows_where_its_first_line_was():
    text = f"# top\n{line('a', '1 * * * *')}\n# middle\n{line('a', '2 * * * *')}\n# end\n"
    wanted = [line("a", "3 * * * *"), line("a", "4 * * * *"), line("a", "5 * * * *")]
    merged = merge(text, {"a": wanted}, None)
    assert split_lines(merged) == ["# top", *wanted, "# middle", "# end"]


def test_tasks_in_scope_but_not_desired_are_removed():
    text = FOREIGN + f"{line('a')}\n{line('b')}\n"
    assert merge(text, {"b": [line("b")]}, None) == FOREIGN + f"{line('b')}\n"
    assert merge(text, {}, None) == FOREIGN


def test_tasks_out_of_scope_are_left_alone():
    text = f"{line('a')}\n{line('b', '@daily')}\n"
    merged = merge(text, {"b": [line("b", "@hourly")]}, {"b"})
    assert merged == f"{line('a')}\n{line('b', '@hourly')}\n"
    assert merge(text, {}, {"b"}) == f"{line('a')}\n"
    assert merge(text, {}, set()) == text


def test_disabling_comments_the_line_out_in_place():
    text = f"# top\n{line('a')}\n# end\n"
    assert merge(text, {"a": [line("a", enabled=False)]}, None) == (
        f"# top\n# {line('a')}\n# end\n"
    )


def test_duplicate_lines_of_a_task_collapse_to_the_desired_ones():
    text = f"{line('a')}\n# x\n{line('a')}\n{line('a')}\n"
    assert merge(text, {"a": [line("a")]}, None) == f"{line('a')}\n# x\n"


def test_a_task_desired_with_no_lines_loses_them():
    # A completed one-time task keeps its name in the plan but has no crontab line.
    assert merge(f"# x\n{line('a')}\n", {"a": []}, None) == "# x\n"


def test_an_empty_crontab():
    assert merge("", {}, None) == ""
    assert merge("", {"a": [line("a")]}, None) == f"{line('a')}\n"


def test_crlf_foreign_lines_keep_their_carriage_returns():
    text = f"# windows\r\n0 1 * * * /x\r\n{line('a')}\r\n"
    merged = merge(text, {"a": [line("a", "@daily")]}, None)
    assert merged == f"# windows\r\n0 1 * * * /x\r\n{line('a', '@daily')}\n"


def test_non_utf8_bytes_survive_decode_merge_encode():
    raw = b"0 4 * * * echo \xe9t\xe9 \xff\xfe\n# caf\xc3\xa9\n"
    text = raw.decode(*ENCODING)
    merged = merge(text, {"a": [line("a")]}, None)
    assert merged.encode(*ENCODING) == raw + line("a").encode() + b"\n"


def test_a_foreign_last_line_without_newline_is_left_as_is_when_nothing_changes():
    # `uninstall` (or an install with nothing to do) must not rewrite a crontab it has no
    # line in: the missing newline is the owner's bytes too.
    assert merge("0 4 * * * /usr/bin/report", {}, None) == "0 4 * * * /usr/bin/report"
    text = f"{line('a')}\n# last, unterminated"
    assert merge(text, {"a": [line("a")]}, None) == text


def test_a_foreign_last_line_without_newline_gets_one_when_lines_follow_it():
    # Otherwise the first managed line would be glued to it.
    assert merge("# end", {"a": [line("a")]}, None) == f"# end\n{line('a')}\n"


def test_our_own_unterminated_line_is_terminated():
    # Debian's cron ignores a crontab whose last line lacks its newline.
    assert merge(line("a"), {"a": [line("a")]}, None) == f"{line('a')}\n"


# --------------------------------------------------------------------------- merge, the property

NAMES = ["a", "b-2", "C_3", "9"]
SCHEDULES = ["0 2 * * *", "*/5 * * * *", "@daily", "@reboot", "0 13,14 * * *"]

# Text that cannot carry the marker: what agency-cron must treat as someone else's.
foreign_text = st.one_of(
    # Bytes as a crontab file holds them (newlines taken out before decoding, so that
    # the text is what decoding real bytes gives), and any text.
    st.binary(max_size=40).map(lambda data: data.replace(b"\n", b"").decode(*ENCODING)),
    st.text(max_size=40).map(lambda text: text.replace("\n", "")),
    st.sampled_from(
        [
            "",
            "   ",
            "#",
            'MAILTO=""',
            "0 0 * * * /usr/bin/report   --all  > /dev/null 2>&1",
            "@daily date +\\%F >> /tmp/x.log",
            "0 6 * * * /bin/true # agency-cron",
            "# agency-cron is great",
        ]
    ),
).filter(lambda text: "agency-cron:" not in text)


@st.composite
def managed(draw) -> tuple[str, str]:
    name = draw(st.sampled_from(NAMES))
    text = line(
        name,
        draw(st.sampled_from(SCHEDULES)),
        draw(st.booleans()),
        draw(st.sampled_from([None, "root"])),
    )
    return name, text + draw(st.sampled_from(["", "", " ", "\t"]))


# A crontab as parts: (None, text) is a foreign line, (name, text) a managed one.
parts = st.lists(
    st.one_of(foreign_text.map(lambda text: (None, text)), managed()),
    max_size=10,
)
desired_lines = st.dictionaries(
    st.sampled_from(NAMES),
    st.lists(st.sampled_from(SCHEDULES), max_size=3, unique=True),
    max_size=len(NAMES),
)


def as_lines(items, ending: str, last_newline: bool) -> list[tuple[str | None, str]]:
    """The parts as the crontab's lines: each ends with its CR in a CRLF file, except an
    unterminated last line, which has no line ending at all."""
    cr = ending[:-1]
    return [
        (name, text + (cr if last_newline or index < len(items) - 1 else ""))
        for index, (name, text) in enumerate(items)
    ]


def expected_lines(lines, desired, scope) -> list[str]:
    """What merge must produce, line by line, computed from the parts."""
    out, placed = [], set()
    for name, text in lines:
        if name is None or (scope is not None and name not in scope):
            out.append(text)
        elif name in desired and name not in placed:
            out.extend(desired[name])
            placed.add(name)
    return out + [text for name, lines in desired.items() if name not in placed for text in lines]


@settings(max_examples=400, deadline=None)
@given(
    items=parts,
    wanted=desired_lines,
    scoped=st.booleans(),
    extra_scope=st.sets(st.sampled_from(NAMES)),
    ending=st.sampled_from(["\n", "\r\n"]),
    last_newline=st.booleans(),
)
def test_merge_property(items, wanted, scoped, extra_scope, ending, last_newline):
    # An unterminated empty last line is no line at all.
    assume(last_newline or not items or items[-1] != (None, ""))
    desired = {name: [line(name, s) for s in schedules] for name, schedules in wanted.items()}
    every_desired_line = [text for lines in desired.values() for text in lines]
    scope = (set(desired) | extra_scope) if scoped else None
    lines = as_lines(items, ending, last_newline)
    text = "\n".join(text for _, text in lines) + ("\n" if lines and last_newline else "")
    assert split_lines(text) == [text for _, text in lines]
    merged = merge(text, desired, scope)
    result = split_lines(merged)

    # Line by line, exactly the model's answer; each line keeps every byte it had.
    want = expected_lines(lines, desired, scope)
    assert result == want

    # Foreign lines (and lines of tasks out of scope) in their order, byte for byte.
    kept = [t for name, t in lines if name is None or (scope is not None and name not in scope)]
    assert [t for t in result if t not in every_desired_line] == kept

    # Every desired line exactly once, in order; nothing of a task in scope but not desired.
    for name, wanted_lines in desired.items():
        assert [t for t in result if managed_name(t) == name] == wanted_lines
    for name in (set(NAMES) if scope is None else scope) - set(desired):
        assert all(managed_name(t) != name for t in result)

    # A newline is added only where a line follows, or to a line of ours; otherwise the
    # text ends as it did.
    ours_last = (
        bool(lines) and lines[-1][0] is not None and (scope is None or lines[-1][0] in scope)
    )
    if want == split_lines(text) and not ours_last:
        assert merged == text
    else:
        assert merged == "".join(f"{t}\n" for t in want)
    assert merged.encode(*ENCODING).decode(*ENCODING) == merged

    # Idempotent, and what it wrote reads back as the desired lines.
    assert merge(merged, desired, scope) == merged
    found = installed_entries(merged)
    assert {name: found.get(name, []) for name in desired} == desired
