"""The systemd export checked by systemd itself: `systemd-analyze verify` on every unit, and
`systemd-analyze calendar` fire times against cronsim's for a corpus of schedules and zones.

systemd-analyze needs no running systemd (this container has none as PID 1). It comes with
Debian's `systemd` package; without it these tests fail and say so, never skip.

Where systemd and cron legitimately disagree, around DST changes, the difference is asserted
explicitly (test_dst_differences), and the corpus comparison applies the same documented
rules (systemd_view) instead of dropping the case:

- Rule GAP: a fixed-time job (minute and hour fields not starting with `*`) whose time falls
  in a spring-forward gap runs right after the gap under cron; systemd skips it that day
  (systemd issue #5595).
- Rule REPEAT: a wildcard job (minute or hour starting with `*`) fires in both passes of a
  repeated (fall-back) hour under cron; systemd fires each wall-clock time once, in the
  first pass.
- Rule YEAR: systemd's calendar stops at the end of 2199.

Two more kinds no rule models, pinned case by case in test_dst_differences: cronsim misses
wall-clock times that exist right after Lord Howe's 30-minute shifts (systemd fires them),
and systemd 252 misses 03:45 on Chatham's DST day and stalls on 02:45-02:59 that day
(test_chatham_gap_stalls_systemd_252).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

from agency_cron.backends.systemd import cron_to_oncalendar, export, render_units
from agency_cron.config import load_settings
from agency_cron.errors import ConfigError
from agency_cron.manifest import Task, load_manifest
from agency_cron.schedule import NICKNAMES

BASE = datetime(2026, 3, 1, tzinfo=UTC)
ITERATIONS = 50
SYSTEMD_LAST_YEAR = 2199  # calendarspec.c MAX_YEAR
# "Next elapse: Mon 2026-03-02 08:00:00 UTC", "Iter. #2: ...", "(in UTC): ...": any label.
ELAPSE = re.compile(r": \w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC$")
VERIFY_COMPLAINTS = ("Unknown key", "Failed to parse", "lacks value", "not executable", "bad unit")

# (cron expression, zone of the task or None for the host's, host zone for systemd-analyze)
CORPUS = [
    ("* * * * *", "UTC", "UTC"),
    ("*/5 * * * *", "Europe/London", "UTC"),
    ("*/15 9-17 * * mon-fri", "Europe/London", "UTC"),
    ("0 * * * *", "America/New_York", "UTC"),
    ("30 */2 * * *", "Asia/Kolkata", "UTC"),
    ("0 */6 * * *", "Asia/Kathmandu", "UTC"),
    ("5,35 * * * *", "Asia/Kathmandu", "UTC"),
    ("*/10 * * * sat", "Pacific/Chatham", "UTC"),
    ("0 0 * * *", "Asia/Kathmandu", "UTC"),
    ("30 2 * * *", "America/New_York", "UTC"),  # rule GAP on 2026-03-08
    ("30 1 * * *", "Europe/London", "UTC"),  # rule GAP on 2026-03-29
    ("15 2,14 * * *", "America/New_York", "UTC"),  # rule GAP on 2026-03-08
    ("0 2-3 * * *", "America/New_York", "UTC"),  # 02:00 moves onto 03:00: both fire once
    ("0 1 * * *", "Europe/Dublin", "UTC"),  # negative DST in tzdata; rule GAP
    ("45 23 * * *", "Pacific/Chatham", "UTC"),
    ("*/20 1-3 * * *", "Australia/Lord_Howe", "UTC"),
    ("0 12 * * 1-5", "Europe/London", "UTC"),
    ("0 22 * * 1,3,5", "America/New_York", "UTC"),
    ("0 9 * * 7", "Asia/Kolkata", "UTC"),
    ("15 10 * * 6,0", "Pacific/Chatham", "UTC"),
    ("0 0 * * 0", "Pacific/Chatham", "UTC"),
    ("0 6 * jun-aug sat,sun", "Europe/London", "UTC"),
    ("0 0 1 * *", "Australia/Lord_Howe", "UTC"),
    ("0 0 31 * *", "UTC", "UTC"),
    ("0 0 30 1,3 *", "UTC", "UTC"),
    ("0 0 31 1-12/2 *", "America/New_York", "UTC"),
    ("0 0 1 */3 *", "UTC", "UTC"),
    ("0 0,12 1 1,7 *", "Australia/Lord_Howe", "UTC"),
    ("59 23 31 12 *", "Asia/Kolkata", "UTC"),
    ("0 0 29 2 *", "UTC", "UTC"),  # rule YEAR: 2028, 2032, ... 2196
    # Both day fields restricted: cron's OR, two OnCalendar lines.
    ("0 0 1,15 * mon", "UTC", "UTC"),
    ("0 9 1-7 * 1", "America/New_York", "UTC"),
    ("0 12 13 * fri", "Pacific/Chatham", "UTC"),
    ("0 0 8-14 * 2", "Asia/Kathmandu", "UTC"),
    ("0 9 1 jun-aug mon", "Asia/Kathmandu", "UTC"),
    ("0 0 29 2 1", "Europe/London", "UTC"),
    ("0 0 1-31 * 1", "UTC", "UTC"),
    ("0 0 15 * 0-6", "Australia/Lord_Howe", "UTC"),
    # A day field starting with `*` makes it an AND (Debian cron, cronsim).
    ("0 0 */2 * mon", "UTC", "UTC"),
    ("0 0 1-7 * */2", "Europe/London", "UTC"),
    ("30 4 */10 * 1-5", "Asia/Kolkata", "UTC"),
    ("@hourly", "Australia/Lord_Howe", "UTC"),
    ("@daily", "Europe/London", "UTC"),
    ("@midnight", "Asia/Kathmandu", "UTC"),
    ("@weekly", "America/New_York", "UTC"),
    ("@monthly", "Asia/Kolkata", "UTC"),
    ("@yearly", "UTC", "UTC"),
    ("@annually", "Pacific/Chatham", "UTC"),
    # No zone on the task: the host's zone, for cron and systemd alike.
    ("0 9 * * mon-fri", None, "Europe/London"),
    ("30 2 * * *", None, "America/New_York"),  # rule GAP
    ("@daily", None, "Australia/Lord_Howe"),
]


def analyze() -> str:
    """The systemd-analyze binary, or a failure that says how to get it."""
    found = shutil.which("systemd-analyze")
    if not found:
        pytest.fail(
            "systemd-analyze not found: install Debian's `systemd` package (apt-get install -y systemd)"
        )
    return found


def systemd_times(specs: list[str], base: datetime, host_zone: str, count: int) -> list[datetime]:
    """The next `count` elapses of all `specs` merged, read back from systemd-analyze in UTC."""
    result = calendar(specs, base, host_zone, count)
    assert result.returncode == 0, result.stderr
    found = {
        datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        for line in result.stdout.splitlines()
        if (match := ELAPSE.search(line))
    }
    return sorted(found)[:count]


def calendar(specs: list[str], base: datetime, host_zone: str, count: int):
    stamp = base.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return subprocess.run(
        [analyze(), "calendar", f"--iterations={count}", f"--base-time={stamp}", *specs],
        capture_output=True,
        text=True,
        env={**os.environ, "TZ": host_zone},
        timeout=120,
        check=False,
    )


def cron_times(expr: str, zone: str, base: datetime):
    """cronsim's fire times for `expr` read in `zone`, from `base` on (an iterator)."""
    return CronSim(NICKNAMES.get(expr, expr), base.astimezone(ZoneInfo(zone)))


def systemd_view(expr: str, zone: str, base: datetime, count: int) -> tuple[list[datetime], set]:
    """cron's fire times with the documented systemd differences applied, and the rules used."""
    sim = cron_times(expr, zone, base)
    kept: list[datetime] = []
    rules: set[str] = set()
    for moment in sim:
        local = moment.astimezone(ZoneInfo(zone))
        if local.year > SYSTEMD_LAST_YEAR:
            rules.add("YEAR")
            break
        if local.hour not in sim.hours or local.minute not in sim.minutes:
            rules.add("GAP")  # cron moved it out of a gap; systemd skips it
        elif local.fold:
            rules.add("REPEAT")  # second pass of a repeated hour; systemd fires once
        else:
            kept.append(moment.astimezone(UTC))
        if len(kept) == count:
            break
    return kept, rules


@pytest.fixture(scope="module")
def corpus_results():
    """systemd-analyze for the whole corpus, a few at a time (each takes 0.1-0.5 s)."""
    analyze()

    def run(case):
        expr, zone, host = case
        return systemd_times(cron_to_oncalendar(expr, zone), BASE, host, ITERATIONS)

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return dict(zip(CORPUS, pool.map(run, CORPUS), strict=True))


def test_corpus_is_broad():
    assert len({expr for expr, _, _ in CORPUS}) >= 40
    zones = {zone or host for _, zone, host in CORPUS}
    assert zones >= {
        "UTC",
        "Europe/London",
        "America/New_York",
        "Asia/Kolkata",
        "Asia/Kathmandu",
        "Australia/Lord_Howe",
        "Pacific/Chatham",
    }


@pytest.mark.parametrize("case", CORPUS, ids=[f"{e} {z or 'host:' + h}" for e, z, h in CORPUS])
def test_fire_times_match_cron(case, corpus_results):
    expr, zone, host = case
    expected, rules = systemd_view(expr, zone or host, BASE, ITERATIONS)
    assert len(expected) == ITERATIONS or "YEAR" in rules
    assert corpus_results[case] == expected


def test_documented_rules_are_exercised_by_the_corpus(corpus_results):
    """The corpus meets rules GAP and YEAR for real; if it stops doing so, these rules are untested."""
    used = set()
    for expr, zone, host in CORPUS:
        used |= systemd_view(expr, zone or host, BASE, ITERATIONS)[1]
    assert used >= {"GAP", "YEAR"}


def test_year_limit():
    """systemd's calendar ends in 2199: 42 Feb 29ths from 2028, where cron goes on."""
    times = systemd_times(["*-02-29 00:00:00 UTC"], BASE, "UTC", ITERATIONS)
    assert len(times) == 42 and times[-1] == datetime(2196, 2, 29, tzinfo=UTC)
    sim = cron_times("0 0 29 2 *", "UTC", BASE)
    assert [next(sim) for _ in range(43)][-1] == datetime(2204, 2, 29, tzinfo=UTC)


def local(zone: str, *stamps: str) -> list[datetime]:
    """'2026-03-08 03:00 -0400' -> aware datetimes (UTC offset given: no ambiguity)."""
    return [datetime.strptime(stamp, "%Y-%m-%d %H:%M %z").astimezone(UTC) for stamp in stamps]


# (zone, base UTC, expr, cron's times, systemd's times), all local with the offset shown.
DST_CASES = [
    pytest.param(
        "America/New_York",
        "2026-03-08 05:00",
        "30 2 * * *",
        ["2026-03-08 03:00 -0400", "2026-03-09 02:30 -0400"],
        ["2026-03-09 02:30 -0400", "2026-03-10 02:30 -0400"],
        id="GAP fixed time: cron runs after the gap, systemd skips the day",
    ),
    pytest.param(
        "Australia/Lord_Howe",
        "2026-10-03 13:00",
        "0 1-3 * * *",
        ["2026-10-04 01:00 +1030", "2026-10-04 02:30 +1100", "2026-10-04 03:00 +1100"],
        ["2026-10-04 01:00 +1030", "2026-10-04 03:00 +1100", "2026-10-05 01:00 +1100"],
        id="GAP of 30 minutes (Lord Howe)",
    ),
    pytest.param(
        "Europe/London",
        "2026-03-29 00:00",
        "*/30 * * * *",
        ["2026-03-29 00:30 +0000", "2026-03-29 02:00 +0100", "2026-03-29 02:30 +0100"],
        ["2026-03-29 00:30 +0000", "2026-03-29 02:00 +0100", "2026-03-29 02:30 +0100"],
        id="gap, wildcard job: both skip the missing hour",
    ),
    pytest.param(
        "America/New_York",
        "2026-11-01 04:00",
        "0 * * * *",
        ["2026-11-01 01:00 -0400", "2026-11-01 01:00 -0500", "2026-11-01 02:00 -0500"],
        ["2026-11-01 01:00 -0400", "2026-11-01 02:00 -0500", "2026-11-01 03:00 -0500"],
        id="REPEAT wildcard job: cron fires in both passes, systemd once",
    ),
    pytest.param(
        "Pacific/Chatham",
        "2026-04-04 13:00",
        "*/30 * * * *",
        ["2026-04-05 03:00 +1345", "2026-04-05 03:30 +1345",
         "2026-04-05 03:00 +1245", "2026-04-05 03:30 +1245"],
        ["2026-04-05 03:00 +1345", "2026-04-05 03:30 +1345",
         "2026-04-05 04:00 +1245", "2026-04-05 04:30 +1245"],
        id="REPEAT of a +12:45 zone (Chatham)",
    ),
    pytest.param(
        "America/New_York",
        "2026-11-01 04:00",
        "30 1 * * *",
        ["2026-11-01 01:30 -0400", "2026-11-02 01:30 -0500"],
        ["2026-11-01 01:30 -0400", "2026-11-02 01:30 -0500"],
        id="repeat, fixed time: both fire once, in the first pass",
    ),
    # cronsim walks whole hours in UTC for wildcard jobs, which lands beside wall-clock
    # times that exist after a 30-minute shift; systemd (like Debian's cron, which matches
    # each wall-clock minute) fires at them.
    pytest.param(
        "Australia/Lord_Howe",
        "2026-10-03 13:00",
        "30 * * * *",
        ["2026-10-04 00:30 +1030", "2026-10-04 01:30 +1030", "2026-10-04 03:30 +1100"],
        ["2026-10-04 00:30 +1030", "2026-10-04 01:30 +1030", "2026-10-04 02:30 +1100"],
        id="cronsim skips 02:30 after Lord Howe's 30-minute gap",
    ),
    pytest.param(
        "Australia/Lord_Howe",
        "2026-04-04 13:00",
        "*/30 2 * * *",
        ["2026-04-05 02:30 +1030", "2026-04-06 02:00 +1030"],
        ["2026-04-05 02:00 +1030", "2026-04-05 02:30 +1030"],
        id="cronsim skips 02:00 after Lord Howe's 30-minute repeat",
    ),
    # systemd 252 restarts the minutes at :00 when a time normalises out of a gap that does
    # not start on the hour, so it misses 03:45 right after Chatham's 02:45 -> 03:45 jump.
    pytest.param(
        "Pacific/Chatham",
        "2026-09-26 13:00",
        "*/15 * * * *",
        ["2026-09-27 02:00 +1245", "2026-09-27 02:15 +1245", "2026-09-27 02:30 +1245",
         "2026-09-27 03:45 +1345", "2026-09-27 04:00 +1345"],
        ["2026-09-27 02:00 +1245", "2026-09-27 02:15 +1245", "2026-09-27 02:30 +1245",
         "2026-09-27 04:00 +1345", "2026-09-27 04:15 +1345"],
        id="systemd skips 03:45 right after Chatham's 45-minute-aligned gap",
    ),
    pytest.param(
        "Pacific/Chatham",
        "2026-09-26 13:00",
        "45 3 * * *",
        ["2026-09-27 03:45 +1345", "2026-09-28 03:45 +1345"],
        ["2026-09-28 03:45 +1345", "2026-09-29 03:45 +1345"],
        id="systemd skips a daily 03:45 on Chatham's DST day, though 03:45 exists",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("zone", "base", "expr", "cron", "systemd"), DST_CASES)
def test_dst_differences(zone, base, expr, cron, systemd):
    start = datetime.strptime(base, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    sim = cron_times(expr, zone, start)
    assert [next(sim).astimezone(UTC) for _ in cron] == local(zone, *cron)
    specs = cron_to_oncalendar(expr, zone)
    assert systemd_times(specs, start, "UTC", len(systemd)) == local(zone, *systemd)


def test_chatham_gap_stalls_systemd_252():
    """A fixed time in Chatham's 02:45-03:44 gap, in the hour it starts: systemd 252 gives up.

    `Resource deadlock avoided` is calendarspec.c's safety valve. A running systemd that
    meets it computes no next elapse for that line, so such a timer stops firing from the day
    before the gap until it is restarted. If this fails, systemd changed: update README.
    """
    start = datetime(2026, 9, 26, 12, tzinfo=UTC)
    sim = cron_times("45 2 * * *", "Pacific/Chatham", start)
    assert next(sim) == local("Pacific/Chatham", "2026-09-27 03:45 +1345")[0]
    result = calendar(cron_to_oncalendar("45 2 * * *", "Pacific/Chatham"), start, "UTC", 3)
    assert result.returncode != 0
    assert "Resource deadlock avoided" in result.stderr


MANIFEST = """\
tasks:
  - name: health-check
    description: Verifies all services are running (100% of them)
    schedule: "*/15 9-17 * * mon-fri"
    command: echo health
    timeout: 10m
    jitter: 30s
  - name: backup
    schedule: ["0 2 1,15 * mon", "@reboot"]
    command: echo backup
    timezone: Asia/Kathmandu
    retries: 2
    retry_delay: 5m
    env: {BACKUP_TOKEN: s3cr3t-t0ken, REGION: eu}
  - name: boot-only
    schedule: "@reboot"
    command: echo boot
    working_dir: /tmp
    user: root
"""


def install(env, cli, manifest: str = MANIFEST):
    """Install through the CLI, so every wrapper the units name exists; return the tasks."""
    env.install(cli, manifest)
    settings = load_settings(config=env.config)
    return settings, load_manifest(env.manifest, settings).tasks


def verify(units: list[Path]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [analyze(), "verify", "--man=no", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_verified(units: list[Path]) -> None:
    result = verify(units)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for complaint in VERIFY_COMPLAINTS:
        assert complaint not in output, output


def test_exported_units_pass_systemd_verify(env, cli, tmp_path):
    settings, tasks = install(env, cli)
    paths = export(settings, tasks, tmp_path / "units")
    assert sorted(p.name for p in paths) == [
        f"agency-cron-{name}.{kind}"
        for name in ("backup", "boot-only", "health-check")
        for kind in ("service", "timer")
    ]
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in paths)
    assert_verified(paths)
    text = "".join(p.read_text() for p in paths)
    assert "s3cr3t" not in text and "BACKUP_TOKEN" not in text


def test_verify_catches_a_broken_unit(env, cli, tmp_path):
    """The verify check above means something: a bad key and a missing wrapper are reported."""
    settings, tasks = install(env, cli)
    paths = export(settings, tasks[:1], tmp_path / "units")
    service = next(p for p in paths if p.suffix == ".service")
    service.write_text(service.read_text().replace("Type=oneshot", "Type=oneshot\nBogus=1"))
    env.wrapper("health-check").unlink()
    result = verify(paths)
    assert result.returncode != 0
    assert "Unknown key 'Bogus'" in result.stderr and "is not executable" in result.stderr


def test_awkward_paths_are_quoted(env, cli, tmp_path):
    """An install root with a space, `%` and `$`: systemd must still find the wrapper."""
    root = env.root / "odd 100% $dir"
    env.config.write_text(env.config.read_text().replace(str(env.agency_root), str(root)))
    settings, tasks = install(env, cli)
    assert settings.agency_root == root
    paths = export(settings, tasks, tmp_path / "units")
    assert_verified(paths)


def test_quote_in_wrapper_path_refused_as_systemd_does(env, tmp_path):
    """systemd refuses a quote in an executable path however it is escaped; so does export."""
    wrapper = tmp_path / 'say "hi"' / "job.sh"
    wrapper.parent.mkdir()
    wrapper.write_text("#!/bin/sh\n")
    wrapper.chmod(0o755)
    escaped = str(wrapper).replace('"', '\\"')
    unit = tmp_path / "probe.service"
    unit.write_text(f'[Service]\nType=oneshot\nExecStart="{escaped}"\n')
    assert "Executable name contains special characters" in verify([unit]).stderr

    root = tmp_path / 'say "hi"'
    env.config.write_text(env.config.read_text().replace(str(env.agency_root), str(root)))
    settings = load_settings(config=env.config)
    task = Task(name="job", schedule="@daily", command="true")
    with pytest.raises(ConfigError, match="systemd refuses in an executable path") as caught:
        export(settings, [task], tmp_path / "units")
    assert caught.value.problems[0].startswith("task 'job': wrapper path ")
    assert not (tmp_path / "units").exists()


def test_longest_unit_name_is_accepted_by_systemd(tmp_path, env):
    name = "n" * 64  # the manifest's longest task name
    task = Task(name=name, schedule="@daily", command="true")
    settings = load_settings(config=env.config)
    wrapper = settings.agency_root / "scripts" / "cronjobs" / f"{name}.sh"
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text("#!/bin/sh\n")
    wrapper.chmod(0o755)
    assert_verified(export(settings, [task], tmp_path / "units"))


def test_export_is_idempotent(env, cli, tmp_path):
    settings, tasks = install(env, cli)
    first = export(settings, tasks, tmp_path / "units")
    stamps = {p: p.stat().st_mtime_ns for p in first}
    assert export(settings, tasks, tmp_path / "units") == first
    assert {p: p.stat().st_mtime_ns for p in first} == stamps


def test_bad_task_writes_nothing(env, tmp_path):
    """One task systemd cannot take: ConfigError (exit 2) naming it, and no file written."""
    settings = load_settings(config=env.config)
    good = Task(name="good", schedule="@daily", command="true")
    # The manifest's name rule keeps such names out; a direct caller may not.
    bad = Task.model_construct(**{**good.model_dump(), "name": "bad name"})
    with pytest.raises(ConfigError) as caught:
        export(settings, [good, bad], tmp_path / "units")
    assert caught.value.exit_code == 2
    assert caught.value.problems == [
        "task 'bad name': 'agency-cron-bad name.service' is not a valid systemd unit name "
        "(letters, digits, ':', '-', '_', '.' and '\\' only, at most 255 bytes)"
    ]
    assert not (tmp_path / "units").exists()


def test_units_name_the_same_wrapper_as_cron(env, cli):
    settings, tasks = install(env, cli)
    crontab = env.crontab.read_text()
    for task in tasks:
        service = render_units(task, settings)[f"agency-cron-{task.name}.service"]
        wrapper = str(env.wrapper(task.name))
        assert f"ExecStart={wrapper}\n" in service
        assert wrapper in crontab
