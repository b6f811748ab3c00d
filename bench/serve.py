"""serve benchmark: the admin API under 50 concurrent clients while tasks run, on loopback.

    python bench/serve.py [--seconds 30] [--clients 50]
        [--reference-seconds 10] [--tasks 20] [--run-every 1.0]

Run by hand, never in the tests. Everything is measured in one run, against one
`python -m agency_cron serve` (this interpreter) on 127.0.0.1 over a throwaway installation
(common.make_site: config.env with an ADMIN_TOKEN, CRONTAB=file: in a temp dir; a manifest
of --tasks tasks bench-00.. with `* * * * *`-like schedules and `echo` commands, installed
first):

1. Load: for --seconds, --clients threads, each with its own httpx.Client (keep-alive),
   read GET /api/tasks and GET /api/health alternately, as fast as the server answers;
   meanwhile a background loop triggers a run every --run-every seconds through
   POST /api/tasks/NAME/actions/run (task after task), which the server starts through the
   runner. Afterwards the triggered runs are looked up in the history (bounded wait).
2. Reference: for --reference-seconds, the same clients with the same loop read
   GET /openapi.json only (FastAPI answers it from a cached schema: no work, no thread
   pool), with nothing running: what any request through this server costs at this
   concurrency. Printed: /api/tasks p50 / reference p50.

Per endpoint: requests, errors (non-2xx; a 503 of /api/health means "some task is
overdue" and is counted apart), exceptions (timeouts, refused connections), throughput and
latency p50/p90/p99/max (nearest rank). The server's CPU time comes from /proc/PID/stat.
Every loop stops at its deadline; a request started before it ends within --timeout.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from common import Site, checked, clean_env, make_site, median, percentile, scratch

ADMIN_TOKEN = "bench-admin-0123456789abcdef-secret"
SCHEDULES = ("* * * * *", "*/2 * * * *", "*/5 * * * *", "1-59/3 * * * *")
READS = ("/api/tasks", "/api/health")
REFERENCE = "/openapi.json"
RUN = "POST /api/tasks/NAME/actions/run"


@dataclass
class Tally:
    """What one endpoint saw: latencies of answered requests, status codes, exceptions."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    exceptions: Counter = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)

    def merge(self, other: Tally) -> None:
        self.latencies += other.latencies
        self.statuses.update(other.statuses)
        self.exceptions.update(other.exceptions)
        self.samples += other.samples[: max(0, 3 - len(self.samples))]


def task_names(count: int) -> list[str]:
    return [f"bench-{i:02d}" for i in range(count)]


def write_site(folder: Path, count: int) -> Site:
    site = make_site(folder, "site")
    with site.config.open("a") as config:
        config.write(f"ADMIN_TOKEN={ADMIN_TOKEN}\n")
    lines = ["tasks:"]
    for i, name in enumerate(task_names(count)):
        lines += [
            f"  - name: {name}",
            f'    schedule: "{SCHEDULES[i % len(SCHEDULES)]}"',
            f'    command: "echo {name} ran"',
        ]
    site.manifest.write_text("\n".join(lines) + "\n")
    return site


def python_cli(site: Site, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "agency_cron",
        "--config",
        str(site.config),
        "--manifest",
        str(site.manifest),
        *args,
    ]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(site: Site, env: dict[str, str], port: int):
    """`python -m agency_cron serve` on 127.0.0.1:port, once it answers: (process, log, url)."""
    log = site.root / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            python_cli(site, "serve", "--port", str(port)),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"bench: serve exited {process.returncode}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(url + REFERENCE, timeout=2).status_code == 200:
                return process, log, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop(process)
    sys.exit(f"bench: serve did not answer within 30 s:\n{log.read_text()[-2000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far (its threads included), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def request(client: httpx.Client, tally: Tally, method: str, path: str, ok: set[int]) -> None:
    start = time.perf_counter()
    try:
        response = client.request(method, path)
    except httpx.HTTPError as exc:
        tally.exceptions[type(exc).__name__] += 1
        if len(tally.samples) < 3:
            tally.samples.append(f"{type(exc).__name__}: {exc}")
        return
    tally.latencies.append(time.perf_counter() - start)
    tally.statuses[response.status_code] += 1
    if response.status_code not in ok and len(tally.samples) < 3:
        tally.samples.append(f"{response.status_code}: {response.text[:200]}")


def client_loop(
    url: str, paths: tuple[str, ...], deadline: float, timeout: float
) -> dict[str, Tally]:
    """One client: GET each of `paths` in turn until the deadline."""
    tallies = {path: Tally() for path in paths}
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=url, headers=headers, timeout=timeout) as client:
        turn = 0
        while time.monotonic() < deadline:
            path = paths[turn % len(paths)]
            request(client, tallies[path], "GET", path, {200, 503})
            turn += 1
    return tallies


def trigger_loop(
    url: str, names: list[str], every: float, deadline: float, timeout: float, out: dict
) -> None:
    """POST .../actions/run of the next task every `every` seconds until the deadline."""
    tally, run_ids = out["tally"], out["run_ids"]
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=url, headers=headers, timeout=timeout) as client:
        turn, tick = 0, time.monotonic()
        while tick < deadline:
            name = names[turn % len(names)]
            start = time.perf_counter()
            try:
                response = client.post(f"/api/tasks/{name}/actions/run")
            except httpx.HTTPError as exc:
                tally.exceptions[type(exc).__name__] += 1
            else:
                tally.latencies.append(time.perf_counter() - start)
                tally.statuses[response.status_code] += 1
                if response.status_code == 202:
                    run_ids.append((name, response.json()["run_id"]))
                elif len(tally.samples) < 3:
                    tally.samples.append(f"{response.status_code}: {response.text[:200]}")
            turn += 1
            tick += every
            time.sleep(max(0.0, min(tick, deadline) - time.monotonic()))


def phase(
    url: str,
    paths: tuple[str, ...],
    clients: int,
    seconds: float,
    timeout: float,
    trigger: dict | None = None,
) -> tuple[dict[str, Tally], float]:
    """`clients` threads reading `paths` in turn for `seconds`; (tallies, wall seconds)."""
    results: list[dict[str, Tally]] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    deadline_box: list[float] = []

    def work() -> None:
        start.wait()  # the deadline is set once every client is connected and ready
        found = client_loop(url, paths, deadline_box[0], timeout)
        with lock:
            results.append(found)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    deadline_box.append(began + seconds)
    start.wait()
    trigger_thread = None
    if trigger is not None:
        args = (url, trigger["names"], trigger["every"], deadline_box[0], timeout, trigger)
        trigger_thread = threading.Thread(target=trigger_loop, args=args, daemon=True)
        trigger_thread.start()
    for thread in threads:
        thread.join(timeout=seconds + timeout + 30)
    if trigger_thread is not None:
        trigger_thread.join(timeout=seconds + timeout + 30)
    wall = time.monotonic() - began
    if any(thread.is_alive() for thread in threads):
        sys.exit("bench: a client thread did not stop after its deadline and timeout")
    merged = {path: Tally() for path in paths}
    for found in results:
        for path, tally in found.items():
            merged[path].merge(tally)
    return merged, wall


def runs_recorded(url: str, run_ids: list[tuple[str, str]], wait_s: float) -> Counter:
    """Final status of each triggered run from GET /api/runs/ID, waiting at most `wait_s`
    for runs still going; 'missing' for a run the history does not know (yet)."""
    done = {"success", "failed", "timeout", "skipped", "killed"}
    found: dict[str, str] = {}
    deadline = time.monotonic() + wait_s
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        while True:
            for _, run_id in run_ids:
                if found.get(run_id) in done:
                    continue
                response = client.get(f"/api/runs/{run_id}")
                found[run_id] = (
                    response.json()["status"] if response.status_code == 200 else "missing"
                )
            if all(status in done for status in found.values()) or time.monotonic() > deadline:
                return Counter(found.values())
            time.sleep(0.5)


def ms(value: float) -> str:
    return f"{value * 1000:.1f}"


def report_row(label: str, tally: Tally, wall: float, ok: set[int]) -> None:
    answered = sum(tally.statuses.values())
    total = answered + sum(tally.exceptions.values())
    errors = sum(n for code, n in tally.statuses.items() if code not in ok and code != 503)
    unavailable = tally.statuses.get(503, 0) if 503 in ok else 0
    lat = tally.latencies
    figures = (
        f"{ms(median(lat)):>8} {ms(percentile(lat, 90)):>8} {ms(percentile(lat, 99)):>8}"
        f" {ms(max(lat)):>8}"
        if lat
        else f"{'-':>8} {'-':>8} {'-':>8} {'-':>8}"
    )
    print(
        f"  {label:<34} {total:>8} {errors:>6} {unavailable:>5} {sum(tally.exceptions.values()):>5}"
        f" {total / wall:>8.1f} {figures}"
    )


HEADER = (
    f"  {'endpoint':<34} {'requests':>8} {'errors':>6} {'503':>5} {'exc':>5} {'req/s':>8}"
    f" {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}"
)


def report_problems(tallies: dict[str, Tally]) -> None:
    for label, tally in tallies.items():
        if tally.exceptions:
            print(f"  {label} exceptions: {dict(tally.exceptions)}")
        for sample in tally.samples:
            print(f"  {label} e.g. {sample}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the load phase")
    parser.add_argument("--clients", type=int, default=50, help="concurrent reading clients")
    parser.add_argument(
        "--reference-seconds", type=float, default=10.0, help="length of the /openapi.json phase"
    )
    parser.add_argument("--tasks", type=int, default=20, help="tasks in the manifest")
    parser.add_argument("--run-every", type=float, default=1.0, help="seconds between runs")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, s")
    args = parser.parse_args()
    if args.clients < 1 or args.seconds <= 0 or args.tasks < 1 or args.run_every <= 0:
        parser.error("--clients, --seconds, --tasks and --run-every must be positive")

    load = os.getloadavg()
    print(
        f"serve benchmark: {os.cpu_count()} cpus, python {sys.version.split()[0]}"
        f" ({sys.executable}), httpx {httpx.__version__}; {args.clients} clients (threads,"
        f" one keep-alive connection each) on loopback, {args.seconds:g} s load + "
        f"{args.reference_seconds:g} s reference; load average {load[0]:.2f} {load[1]:.2f}"
        f" {load[2]:.2f}\n"
    )
    with scratch("agency-cron-bench-serve-") as folder:
        site = write_site(folder, args.tasks)
        env = clean_env(XDG_CACHE_HOME=str(folder / "cache"))
        checked(
            subprocess.run(python_cli(site, "install"), env=env, capture_output=True, check=False),
            "agency-cron install",
        )
        process, log, url = start_server(site, env, free_port())
        try:
            # Warm-up: imports on first use, the OpenAPI schema, SQLite's page cache.
            with httpx.Client(base_url=url, timeout=args.timeout) as client:
                client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
                for path in (*READS, REFERENCE) * 3:
                    client.get(path)

            trigger = {
                "names": task_names(args.tasks),
                "every": args.run_every,
                "tally": Tally(),
                "run_ids": [],
            }
            cpu0 = cpu_seconds(process.pid)
            load_tallies, load_wall = phase(
                url, READS, args.clients, args.seconds, args.timeout, trigger
            )
            load_cpu = cpu_seconds(process.pid) - cpu0
            outcomes = runs_recorded(url, trigger["run_ids"], wait_s=15)

            cpu0 = cpu_seconds(process.pid)
            ref_tallies, ref_wall = phase(
                url, (REFERENCE,), args.clients, args.reference_seconds, args.timeout
            )
            ref_cpu = cpu_seconds(process.pid) - cpu0
        finally:
            stop(process)
        server_errors = [
            line for line in log.read_text(errors="replace").splitlines() if "ERROR" in line
        ]

    reads = sum(
        sum(t.statuses.values()) + sum(t.exceptions.values()) for t in load_tallies.values()
    )
    runs = trigger["tally"]
    print(
        f"load phase: {load_wall:.1f} s wall, {reads} reads ({reads / load_wall:.1f} req/s),"
        f" {sum(runs.statuses.values()) + sum(runs.exceptions.values())} run triggers;"
        f" server CPU {load_cpu:.1f} s ({load_cpu / load_wall * 100:.0f}% of one core,"
        f" {load_cpu / max(reads, 1) * 1000:.2f} ms per read)"
    )
    print(HEADER)
    for path in READS:
        report_row(
            f"GET {path}", load_tallies[path], load_wall, {200, 503} if "health" in path else {200}
        )
    report_row(RUN, runs, load_wall, {202})
    print(
        f"  triggered runs in the history: {dict(outcomes) or 'none'}"
        f" (of {len(trigger['run_ids'])} started)"
    )
    report_problems({**{f"GET {p}": load_tallies[p] for p in READS}, RUN: runs})

    ref = ref_tallies[REFERENCE]
    ref_total = sum(ref.statuses.values()) + sum(ref.exceptions.values())
    print(
        f"\nreference phase: {ref_wall:.1f} s wall, {ref_total} reads"
        f" ({ref_total / ref_wall:.1f} req/s), nothing running; server CPU {ref_cpu:.1f} s"
        f" ({ref_cpu / max(ref_total, 1) * 1000:.2f} ms per read)"
    )
    print(HEADER)
    report_row(f"GET {REFERENCE}", ref, ref_wall, {200})
    report_problems({f"GET {REFERENCE}": ref})

    tasks = load_tallies["/api/tasks"].latencies
    if tasks and ref.latencies:
        ratio = median(tasks) / median(ref.latencies)
        print(
            f"\n/api/tasks p50 / /openapi.json p50 = {ms(median(tasks))} / "
            f"{ms(median(ref.latencies))} ms = {ratio:.1f}x"
        )
    errors = sum(
        n
        for path, tally in load_tallies.items()
        for code, n in tally.statuses.items()
        if code != 200 and not (code == 503 and "health" in path)
    )
    exceptions = sum(sum(t.exceptions.values()) for t in (*load_tallies.values(), runs, ref))
    print(
        f"requests total {reads + ref_total + sum(runs.statuses.values())}, errors {errors}"
        f" (+ {sum(n for c, n in runs.statuses.items() if c != 202)} refused run triggers,"
        f" {sum(n for c, n in ref.statuses.items() if c != 200)} on the reference),"
        f" exceptions {exceptions}; ERROR lines in the server's log: {len(server_errors)}"
    )
    for line in server_errors[:3]:
        print(f"  {line[:200]}")
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
