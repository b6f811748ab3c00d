"""Property: any manifest is installed or refused with exit 2, never anything in between.

Generated manifests (valid and invalid names, schedules, bodies) meet generated foreign
crontab text (odd spacing, comments, variables, @reboot, `%`, tabs, non-ASCII and non-UTF-8
bytes, 6-field look-alikes). After install the crontab holds the foreign lines unchanged plus
exactly one managed line per (task, schedule); a second install changes nothing; uninstall
gives back the original bytes. A refused manifest leaves the crontab and the disk untouched.

The expected outcome comes from tables below, not from the library: each generated value
carries whether it is valid and, for schedules, the cron form it must become.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agency_cron.backends.crontab import managed_name

# --------------------------------------------------------------------------- manifests

VALID_NAMES = ["alpha", "b-2", "C_3", "9lives", "n" * 64, "backup", "x"]
INVALID_NAMES = [
    "",
    "n" * 65,
    "a/b",
    "..",
    "a b",
    "a;b",
    "$(id)",
    "-lead",
    "a\nb",
    "a\x00b",
    "health_check_cron",  # would overwrite the bundled script of that name
]

# (as written in the manifest, the cron form it must become; None = must be refused)
SCHEDULES = [
    ("*/5 * * * *", "*/5 * * * *"),
    ("0  2 * * *", "0 2 * * *"),
    ("\t0 2 * * *  ", "0 2 * * *"),
    ("@daily", "@daily"),
    ("@HOURLY", "@hourly"),
    ("@midnight", "@midnight"),
    ("@reboot", "@reboot"),
    ("@every 15m", "*/15 * * * *"),
    ("@every 1h", "0 * * * *"),
    ("@every 2h", "0 */2 * * *"),
    ("@every 1d", "0 0 * * *"),
    ("@every 60s", "* * * * *"),
    ("0 9-17 * * mon-fri", "0 9-17 * * mon-fri"),
    ("30 4 1,15 * 5", "30 4 1,15 * 5"),
    ("0 0 29 2 *", "0 0 29 2 *"),
    ("@bogus", None),
    ("*/0 * * * *", None),
    ("0 0 31 2 *", None),
    ("@every 7m", None),
    ("@every 15s", None),
    ("* * * * * *", None),
    ("0 0 0 * * *", None),
    ("61 * * * *", None),
    ("", None),
    ("0 0 * *", None),
    ("0 0 L * *", None),
    ("@daily\n* * * * * /bin/evil", None),
]

# Schedules that fire at the same minutes: a task keeps only the first of them.
FIRES_LIKE = {"@midnight": "@daily", "0 0 * * *": "@daily", "@hourly": "0 * * * *"}


def distinct(crons: list[str]) -> list[str]:
    kept: dict[str, str] = {}
    for cron in crons:
        kept.setdefault(FIRES_LIKE.get(cron, cron), cron)
    return list(kept.values())


# (kind, body, valid)
BODIES = [
    ("command", "echo hi", True),
    ("command", "echo 'a  b' | tr a b", True),
    ("command", "echo 100% done", True),
    ("command", "printf '%s\\n' caf\u00e9", True),
    ("script", "echo one\necho two\n", True),
    ("command", "echo a\necho b", False),
    ("command", "", False),
    ("command", "   ", False),
    ("command", "echo a\rb", False),
]


GOOD_SCHEDULES = [item for item in SCHEDULES if item[1] is not None]
GOOD_BODIES = [item for item in BODIES if item[2]]


@st.composite
def tasks(draw, clean: bool):
    """One task; `clean` draws only valid values (so installs happen often enough)."""
    names = VALID_NAMES if clean else VALID_NAMES + INVALID_NAMES
    schedules = GOOD_SCHEDULES if clean else SCHEDULES
    name = draw(st.sampled_from(names))
    if draw(st.booleans()):
        picked = draw(st.lists(st.sampled_from(schedules), min_size=int(clean), max_size=3))
        schedule = [written for written, _ in picked]
    else:
        picked = [draw(st.sampled_from(schedules))]
        schedule = picked[0][0]
    kind, body, body_ok = draw(st.sampled_from(GOOD_BODIES if clean else BODIES))
    enabled = draw(st.sampled_from([None, True, False]))
    raw = {"name": name, "schedule": schedule, kind: body}
    if enabled is not None:
        raw["enabled"] = enabled
    crons = [cron for _, cron in picked]
    valid = name in VALID_NAMES and bool(crons) and all(c is not None for c in crons) and body_ok
    return raw, valid, distinct(crons), enabled is not False


@st.composite
def manifests(draw):
    clean = draw(st.booleans())
    drawn = draw(
        st.lists(
            tasks(clean),
            min_size=0,
            max_size=4,
            unique_by=(lambda t: t[0]["name"]) if clean else None,
        )
    )
    names = [raw["name"] for raw, _, _, _ in drawn]
    valid = all(ok for _, ok, _, _ in drawn) and len(set(names)) == len(names)
    document: dict = {"tasks": [raw for raw, _, _, _ in drawn]}
    if draw(st.booleans()):
        document = {"defaults": {"timeout": "10m"}, **document}
    expected = [(raw["name"], crons, enabled) for raw, _, crons, enabled in drawn]
    return yaml.safe_dump(document, allow_unicode=draw(st.booleans())), valid, expected


# --------------------------------------------------------------------------- foreign crontabs

FOREIGN_LINES = [
    b"0 0 * * * /usr/bin/report   --all  > /dev/null 2>&1\n",
    b"*/5  *  * * *\techo 'odd\tspacing'\n",
    b"\t15 3 * * 1-5\t/usr/bin/tabbed\n",
    b"# a comment\n",
    b"#\n",
    b"\n",
    b"   \n",
    b'MAILTO=""\n',
    b"SHELL=/bin/bash\n",
    b"PATH = /usr/bin:/bin\n",
    b"@reboot   /usr/local/bin/warm-cache\n",
    b"@daily date +\\%F >> /tmp/x.log\n",
    b"0 1 * * * echo 50% off %stdin goes here\n",
    b"# caf\xc3\xa9 \xe2\x98\x95 non-ASCII\n",
    b"0 4 * * * echo \xe9t\xe9 latin-1, not UTF-8\n",
    b"0 0 0 * * * /six/fields\n",
    b"* * * * * * *\n",
    b"0 5 * * * /usr/bin/backup # agency-cron is great\n",
    b"0 6 * * * /bin/true # agency-cron:\n",
    b"0 7 * * * /bin/crlf\r\n",
    b"# 0 0 * * * /disabled/by/hand\n",
    b"  # indented comment with trailing spaces   \n",
]

free_comment = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=30
).map(lambda text: ("# " + text + "\n").encode())

cron_field = st.sampled_from(["*", "0", "*/5", "1-5", "mon", "jan,feb", "59", "%"])
spacing = st.sampled_from([" ", "  ", "\t", " \t "])


@st.composite
def cron_like(draw):
    fields = draw(st.lists(cron_field, min_size=5, max_size=6))
    parts = []
    for field in [*fields, draw(st.sampled_from(["/bin/x", "echo a%b", "run\u00e9"]))]:
        parts += [field, draw(spacing)]
    return ("".join(parts[:-1]) + "\n").encode()


def is_foreign(line: bytes) -> bool:
    return managed_name(line.decode("utf-8", "surrogateescape").rstrip("\n")) is None


foreign_crontabs = st.lists(
    st.sampled_from(FOREIGN_LINES) | free_comment.filter(is_foreign) | cron_like(),
    max_size=12,
).map(b"".join)


# --------------------------------------------------------------------------- the property


def split(data: bytes) -> list[str]:
    text = data.decode("utf-8", "surrogateescape")
    return text.split("\n")[:-1] if text else []


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=manifests(), original=foreign_crontabs)
def test_install_is_all_or_nothing_and_uninstall_restores(
    cli, monkeypatch, tmp_path, make_env, config_keys, case, original
):
    text, valid, expected = case
    for key in config_keys:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    with tempfile.TemporaryDirectory(prefix="acprop-") as folder:
        root = Path(folder)
        site_env = make_env(root)
        config, crontab, manifest = site_env.config, site_env.crontab, site_env.manifest
        crontab.write_bytes(original)
        manifest.write_text(text, encoding="utf-8")
        args = ["--config", str(config), "--manifest", str(manifest)]
        site = sorted(p.name for p in root.iterdir())

        code, out, err = cli(*args, "install")
        assert code in (0, 2), err
        assert "Traceback" not in err
        assert code == (0 if valid else 2), f"{text}\n{err}"
        event(f"exit {code}, {len(expected)} task(s)")
        if code == 2:
            assert crontab.read_bytes() == original
            assert sorted(p.name for p in root.iterdir()) == site
            assert not any((root / "logrotate.d").iterdir())
            return

        installed = crontab.read_bytes()
        lines = split(installed)
        assert [line for line in lines if managed_name(line) is None] == split(original)
        scripts = root / "agency" / "scripts" / "cronjobs"
        want = [
            f"{'' if enabled else '# '}{cron} {scripts / f'{name}.sh'} # agency-cron:{name}"
            for name, crons, enabled in expected
            for cron in crons
        ]
        assert [line for line in lines if managed_name(line) is not None] == want
        assert installed == original + "".join(f"{line}\n" for line in want).encode()

        code, out, err = cli(*args, "install")
        assert code == 0, err
        assert "no changes" in out
        assert crontab.read_bytes() == installed

        code, _, err = cli(*args, "uninstall")
        assert code == 0, err
        assert crontab.read_bytes() == original
