"""The systemd:DIR target and the export commands, through the CLI."""

from __future__ import annotations

import json
import subprocess

import yaml

MANIFEST = """
tasks:
  - name: nightly
    schedule: "30 2 * * *"
    timezone: Europe/Paris
    command: echo nightly
  - name: often
    schedule: "@every 15m"
    command: echo often
    env: {API_TOKEN: tok-0123456789}
"""


def test_systemd_target_installs_units_instead_of_lines(env, cli):
    env.write_manifest(MANIFEST)
    units = env.root / "units"
    target = ["--crontab", f"systemd:{units}"]
    assert cli(*env.args("install", *target))[0] == 0
    names = sorted(p.name for p in units.iterdir())
    assert names == [
        "agency-cron-nightly.service",
        "agency-cron-nightly.timer",
        "agency-cron-often.service",
        "agency-cron-often.timer",
    ]
    timer = (units / "agency-cron-nightly.timer").read_text()
    assert "OnCalendar=*-*-* 02:30:00 Europe/Paris" in timer and "Persistent=true" in timer
    assert "no changes" in cli(*env.args("install", *target))[1]
    assert cli(*env.args("disable", "often", *target))[0] == 0
    assert not (units / "agency-cron-often.timer").exists()
    assert (units / "agency-cron-often.service").exists()
    code, out, _ = cli(*env.args("uninstall", "--json", *target))
    assert code == 0 and list(units.iterdir()) == []
    assert {r["item"] for r in json.loads(out)["rows"] if r["kind"] == "task"} >= {"nightly"}


def test_systemd_export_units_pass_systemd_analyze_verify(env, cli):
    env.write_manifest(MANIFEST)
    cli(*env.args("install"))  # the wrappers the services call must exist
    folder = env.root / "exported"
    code, out, _ = cli(*env.args("export", "systemd", str(folder)))
    assert code == 0 and "4 unit file(s)" in out
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *sorted(str(p) for p in folder.iterdir())],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "tok-0123456789" not in "".join(p.read_text() for p in folder.iterdir())


def test_kubernetes_export_to_stdout_is_valid_and_keeps_secrets_out(env, cli):
    import kubernetes_validate

    env.write_manifest(MANIFEST)
    code, out, _ = cli(
        *env.args("export", "kubernetes", "--image", "registry.example/ops:1.4", "-")
    )
    assert code == 0
    documents = [doc for doc in yaml.safe_load_all(out) if doc]
    kinds = sorted(doc["kind"] for doc in documents)
    assert kinds == ["ConfigMap", "CronJob", "CronJob"]
    for doc in documents:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
    assert "tok-0123456789" not in out
    cronjob = next(
        d for d in documents if d["kind"] == "CronJob" and d["metadata"]["name"] == "nightly"
    )
    assert cronjob["spec"]["timeZone"] == "Europe/Paris"


def test_kubernetes_export_refuses_names_kubernetes_rejects(env, cli):
    env.write_manifest(
        """
        tasks:
          - name: Bad_Name
            schedule: "@daily"
            command: "true"
        """
    )
    target = env.root / "out.yaml"
    code, _, err = cli(*env.args("export", "kubernetes", str(target)))
    assert code == 2 and "Bad_Name" in err and not target.exists()


def test_doctor_on_a_systemd_target_checks_the_units(env, cli):
    env.write_manifest(MANIFEST)
    units = env.root / "units"
    target = ["--crontab", f"systemd:{units}"]
    cli(*env.args("install", *target))
    findings = json.loads(cli(*env.args("doctor", "--json", *target))[1])["findings"]
    assert [f["ok"] for f in findings if f["check"] == "systemd-units"] == [True]
    (units / "agency-cron-often.timer").unlink()
    code, out, _ = cli(*env.args("doctor", "--json", *target))
    broken = [f for f in json.loads(out)["findings"] if f["check"] == "systemd-units"]
    assert code == 1 and broken[0]["task"] == "often" and broken[0]["fix"] == "agency-cron install"
