"""Install benchmark: cold install and no-op re-install of manifests of N tasks.

    python bench/install.py [--sizes 10,100,1000,5000] [--repeat 3]
        [--user-sizes 100,1000] [--ansible-python /tmp/ansible-venv/bin/python | --no-ansible]

Run by hand as root (it creates and deletes a throwaway system user), never in the tests.

For each size N the same run measures (median of --repeat runs each):
  floor   `python -c pass` + `crontab -u USER FILE` of the same N lines on a throwaway user:
          the least any tool that starts Python and installs a crontab can cost;
  cold    `agency-cron install` into a fresh installation (CRONTAB=file: in a temp dir);
  no-op   `agency-cron install` again with nothing to change (must print "no changes").
For --user-sizes the same is done with CRONTAB=user:USER, the real crontab the floor writes,
so that comparison is like for like. The peer is Ansible's `cron` module (ansible-core in
its own venv) installing the same 100 tasks into the same user's crontab, cold then no-op.

Targets (2-core machine): no-op re-install of 1,000 tasks under 0.5 s, cost linear in tasks,
per task at least 100x faster than the Ansible run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

from common import (
    Site,
    checked,
    clean_env,
    make_site,
    median,
    remove_user_crontab,
    scratch,
    throwaway_user,
    timed,
)

NOOP_TARGET_S = 0.5
NOOP_TARGET_SIZE = 1000
ANSIBLE_TASKS = 100
ANSIBLE_TARGET_X = 100.0
DEFAULT_ANSIBLE_PYTHON = "/tmp/ansible-venv/bin/python"


def task_names(count: int) -> list[str]:
    return [f"task-{i:05d}" for i in range(count)]


def schedule(index: int) -> tuple[str, str]:
    """(minute, hour) of task `index`: spread over the day so lines differ."""
    return str(index % 60), str(index % 24)


def write_manifest(site: Site, count: int) -> None:
    lines = ["tasks:"]
    for i, name in enumerate(task_names(count)):
        minute, hour = schedule(i)
        lines += [
            f"  - name: {name}",
            f'    schedule: "{minute} {hour} * * *"',
            '    command: "true"',  # quoted: a bare `true` is a YAML boolean
        ]
    site.manifest.write_text("\n".join(lines) + "\n")


def crontab_lines(site: Site, count: int) -> str:
    """The lines agency-cron writes for the manifest: the floor installs exactly these."""
    out = []
    for i, name in enumerate(task_names(count)):
        minute, hour = schedule(i)
        out.append(f"{minute} {hour} * * * {site.wrapper(name)} # agency-cron:{name}\n")
    return "".join(out)


def floor_sample(folder: Path, site: Site, count: int, user: str) -> float:
    """One `python -c pass` + one `crontab -u USER FILE` of the same lines (seconds)."""
    table = folder / f"floor-{count}.crontab"
    if not table.exists():
        table.write_text(crontab_lines(site, count))
    python = timed([sys.executable, "-c", "pass"])[0]
    remove_user_crontab(user)
    seconds, result = timed(["crontab", "-u", user, str(table)])
    checked(result, "crontab -u USER FILE (floor)")
    remove_user_crontab(user)
    return python + seconds


def install_once(site: Site, *extra: str) -> tuple[float, bytes]:
    seconds, result = timed(site.cli("install", *extra), env=clean_env())
    checked(result, f"agency-cron install ({site.root})")
    return seconds, result.stdout


def measure(folder: Path, count: int, repeat: int, floor_user: str, user: str | None):
    """Cold installs into fresh sites, then no-op re-installs of the last one, each run
    interleaved with a floor sample on `floor_user`. With `user`, agency-cron installs into
    that user's crontab (CRONTAB=user:NAME), else into a file. Returns (cold, no-op, floor)
    lists of seconds and the last site (still installed)."""
    cold: list[float] = []
    floor: list[float] = []
    site = None
    for r in range(repeat):
        if site is not None:
            _drop(site)
        site = make_site(folder, f"site-{count}-{r}", f"user:{user}" if user else None)
        write_manifest(site, count)
        floor.append(floor_sample(folder, site, count, floor_user))
        if user:
            remove_user_crontab(user)
        cold.append(install_once(site)[0])
    noop = []
    for _ in range(repeat):
        floor.append(floor_sample(folder, site, count, floor_user))
        seconds, out = install_once(site)
        if b"no changes" not in out:
            sys.exit(f"bench: the re-install of {count} tasks was not a no-op:\n{out[-2000:]!r}")
        noop.append(seconds)
    return cold, noop, floor, site


def _drop(site: Site) -> None:
    shutil.rmtree(site.root, ignore_errors=True)


def row(label, count, floor, cold, noop) -> str:
    c, n = median(cold), median(noop)
    return (
        f"{label:<6}{count:>6} {floor:>8.3f} {c:>8.3f} {c / count * 1000:>9.2f} {c / floor:>7.1f}x"
        f" {n:>8.3f} {n / count * 1000:>9.2f} {n / floor:>7.1f}x"
    )


HEADER = (
    f"{'target':<6}{'size':>6} {'floor s':>8} {'cold s':>8} {'cold ms/t':>9} {'cold/fl':>8}"
    f" {'no-op s':>8} {'noop ms/t':>9} {'noop/fl':>8}"
)


# ---------------------------------------------------------------- Ansible


def ansible_playbook(ansible_python: str) -> list[str] | None:
    python = Path(ansible_python)
    if not python.exists():
        return None
    script = python.parent / "ansible-playbook"
    if script.exists():
        return [str(script)]
    probe = timed([str(python), "-c", "import ansible.cli.playbook"])[1]
    return [str(python), "-m", "ansible.cli.playbook"] if probe.returncode == 0 else None


def write_playbook(path: Path, site: Site, count: int, user: str) -> None:
    lines = [
        "- hosts: localhost",
        "  connection: local",
        "  gather_facts: false",
        "  vars:",
        '    ansible_python_interpreter: "{{ ansible_playbook_python }}"',
        "  tasks:",
    ]
    for i, name in enumerate(task_names(count)):
        minute, hour = schedule(i)
        lines += [
            f"    - name: {name}",
            "      ansible.builtin.cron:",
            f"        name: {name}",
            f'        minute: "{minute}"',
            f'        hour: "{hour}"',
            f"        job: {site.wrapper(name)}",
            f"        user: {user}",
        ]
    path.write_text("\n".join(lines) + "\n")


RECAP = re.compile(rb"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def ansible_run(cmd: list[str], playbook: Path, home: Path, expect_changed: int) -> float:
    env = clean_env(
        ANSIBLE_HOME=str(home),
        ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCALHOST_WARNING="False",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
        ANSIBLE_RETRY_FILES_ENABLED="False",
    )
    seconds, result = timed([*cmd, "-i", "localhost,", str(playbook)], env=env)
    checked(result, "ansible-playbook")
    found = RECAP.search(result.stdout)
    if not found or int(found.group(2)) != expect_changed or int(found.group(4)):
        sys.exit(
            f"bench: unexpected ansible recap (wanted changed={expect_changed}):\n"
            f"{result.stdout[-1500:].decode(errors='replace')}"
        )
    return seconds


def measure_ansible(cmd, folder: Path, site: Site, user: str, repeat: int):
    playbook = folder / "ansible-cron.yml"
    write_playbook(playbook, site, ANSIBLE_TASKS, user)
    cold: list[float] = []
    noop: list[float] = []
    for _ in range(repeat):
        remove_user_crontab(user)
        cold.append(ansible_run(cmd, playbook, folder / "ansible-home", ANSIBLE_TASKS))
        noop.append(ansible_run(cmd, playbook, folder / "ansible-home", 0))
    remove_user_crontab(user)
    return median(cold), median(noop)


# ---------------------------------------------------------------- main


def linearity(results: dict[int, tuple[float, float]], which: int) -> str:
    sizes = sorted(results)
    parts = []
    for a, b in zip(sizes, sizes[1:], strict=False):
        slope = (results[b][which] - results[a][which]) / (b - a) * 1000
        parts.append(f"{a}->{b}: {slope:.2f}")
    return ", ".join(parts)


def parse_sizes(text: str) -> list[int]:
    return [int(s.replace("_", "")) for s in text.split(",") if s.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100,1000,5000", type=parse_sizes)
    parser.add_argument(
        "--user-sizes",
        default="100,1000",
        type=parse_sizes,
        help="sizes also installed into the throwaway user's real crontab",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--ansible-python",
        default=DEFAULT_ANSIBLE_PYTHON,
        help="python of a venv with ansible-core",
    )
    parser.add_argument("--no-ansible", action="store_true")
    args = parser.parse_args()

    print(
        f"install benchmark: {os.cpu_count()} cpus, python {sys.version.split()[0]},"
        f" median of {args.repeat}; floor = `python -c pass` + `crontab -u USER FILE`"
        f" of the same lines, sampled between our runs; {load_text()}"
    )
    with (
        scratch("agency-cron-bench-install-") as folder,
        throwaway_user("acfloor") as floor_user,
        throwaway_user("acbench") as user,
    ):
        print(
            f"throwaway users: {floor_user} (floor), {user} (CRONTAB=user:{user} and Ansible);"
            f" installations under {folder}\n"
        )
        print(HEADER)
        file_results: dict[int, tuple[float, float]] = {}
        user_results: dict[int, tuple[float, float]] = {}
        json_noop = None
        for count in args.sizes:
            cold, noop, floor, site = measure(folder, count, args.repeat, floor_user, None)
            if count == NOOP_TARGET_SIZE:
                json_noop = median([install_once(site, "--json")[0] for _ in range(args.repeat)])
            _drop(site)
            file_results[count] = (median(cold), median(noop))
            print(row("file:", count, median(floor), cold, noop), flush=True)
        for count in args.user_sizes:
            cold, noop, floor, site = measure(folder, count, args.repeat, floor_user, user)
            remove_user_crontab(user)
            _drop(site)
            user_results[count] = (median(cold), median(noop))
            print(row("user:", count, median(floor), cold, noop), flush=True)

        print()
        print(
            f"linearity, marginal ms per added task (file:): cold {linearity(file_results, 0)};"
            f" no-op {linearity(file_results, 1)}"
        )
        if NOOP_TARGET_SIZE in file_results:
            got = file_results[NOOP_TARGET_SIZE][1]
            verdict = "PASS" if got < NOOP_TARGET_S else "FAIL"
            print(
                f"target no-op re-install of {NOOP_TARGET_SIZE} tasks < {NOOP_TARGET_S} s:"
                f" {got:.3f} s {verdict}"
                + (f" (with --json, no rich table: {json_noop:.3f} s)" if json_noop else "")
            )
        print(ansible_line(args, folder, user, user_results))
    print(f"at the end: {load_text()}")
    return 0


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def ansible_line(args, folder: Path, user: str, ours: dict[int, tuple[float, float]]) -> str:
    if args.no_ansible:
        return "ansible: skipped (--no-ansible)"
    cmd = ansible_playbook(args.ansible_python)
    if cmd is None:
        return (
            f"ansible: SKIPPED: no ansible-core at {args.ansible_python}; create it with"
            " `python3 -m venv /tmp/ansible-venv && /tmp/ansible-venv/bin/pip install"
            " ansible-core` or pass --ansible-python PATH"
        )
    site = make_site(folder, "ansible-jobs")
    a_cold, a_noop = measure_ansible(cmd, folder, site, user, args.repeat)
    per = ANSIBLE_TASKS
    text = (
        f"ansible ({per} ansible.builtin.cron tasks, user:{user}): cold {a_cold:.2f} s ="
        f" {a_cold / per * 1000:.1f} ms/task, no-op {a_noop:.2f} s ="
        f" {a_noop / per * 1000:.1f} ms/task"
    )
    if per not in ours:
        return text + f"; (add {per} to --user-sizes for the per-task ratio)"
    o_cold, o_noop = ours[per]
    x_cold, x_noop = a_cold / o_cold, a_noop / o_noop
    verdict = "PASS" if min(x_cold, x_noop) >= ANSIBLE_TARGET_X else "FAIL"
    return (
        text + f"\nagency-cron ({per} tasks, same user crontab): cold {o_cold:.3f} s,"
        f" no-op {o_noop:.3f} s -> agency-cron faster per task: cold {x_cold:.1f}x,"
        f" no-op {x_noop:.1f}x (target >= {ANSIBLE_TARGET_X:.0f}x: {verdict})"
    )


if __name__ == "__main__":
    sys.exit(main())
