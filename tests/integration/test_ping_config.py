"""Heartbeat ping settings: PING_URL, PING_TIMEOUT and ping_url from config.env and the
manifest to the installed spec; bad ones refused with exit 2 and nothing written; the
URLs' secrets masked in every output (diffs, doctor, the admin API's definitions)."""

from __future__ import annotations

import json

from agency_cron import admin, doctor
from agency_cron.config import load_settings
from agency_cron.manifest import load_manifest

CHECK = "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278"
KEY = "fqOOd6-F4MMNuCEnzTU01w"

MANIFEST = f"""\
tasks:
  - name: backup
    schedule: "@daily"
    command: echo backup
  - name: report
    schedule: "@hourly"
    command: echo report
    ping_url: https://hc-ping.com/{CHECK}
  - name: quiet
    schedule: "@hourly"
    command: echo quiet
    ping_url: none
"""


def configure(env, **values: str) -> None:
    env.add_config(**values)


def spec(env, name: str) -> dict:
    return json.loads((env.state_dir / "tasks" / f"{name}.json").read_text())


def test_ping_url_then_ping_url_template_then_none(env, cli):
    configure(env, PING_URL=f"https://hc-ping.com/{KEY}/{{name}}", PING_TIMEOUT="4.5")
    env.write_manifest(MANIFEST)
    code, _, err = cli(*env.args("install"))
    assert code == 0, err
    assert spec(env, "backup")["ping_url"] == f"https://hc-ping.com/{KEY}/backup"
    assert spec(env, "backup")["ping_timeout"] == 4.5
    assert spec(env, "report")["ping_url"] == f"https://hc-ping.com/{CHECK}"
    assert "ping_url" not in spec(env, "quiet") and "ping_timeout" not in spec(env, "quiet")
    # The runner masks the key and the UUID in the task's output, the slug stays readable.
    assert KEY in spec(env, "backup")["secrets"] and "backup" not in spec(env, "backup")["secrets"]
    assert CHECK in spec(env, "report")["secrets"]


def test_no_ping_settings_leave_the_spec_as_it_was(env, cli):
    env.write_manifest(MANIFEST.replace(f"    ping_url: https://hc-ping.com/{CHECK}\n", ""))
    code, _, err = cli(*env.args("install"))
    assert code == 0, err
    assert not any(key.startswith("ping") for key in spec(env, "backup"))


def refused(env, cli) -> str:
    before = env.snapshot()
    code, out, err = cli(*env.args("install"))
    assert code == 2, (out, err)
    assert "Traceback" not in err
    assert env.snapshot() == before
    return err


def test_a_bad_ping_url_names_file_task_and_field_and_masks_the_check(env, cli):
    env.write_manifest(MANIFEST.replace("https://hc-ping.com/", "ftp://hc-ping.com/"))
    err = refused(env, cli)
    assert f"{env.manifest}: tasks[1] (report): ping_url: expected an http:// or https://" in err
    assert "ftp://hc-ping.com/***" in err and CHECK not in err
    assert len(err.strip().splitlines()) == 1


def test_an_unknown_placeholder_is_refused(env, cli):
    env.write_manifest(MANIFEST.replace(f"hc-ping.com/{CHECK}", f"hc-ping.com/{KEY}/{{task}}"))
    err = refused(env, cli)
    assert "tasks[1] (report): ping_url: the only placeholder is {name}" in err
    assert KEY not in err


def test_bad_ping_settings_in_the_config_are_refused(env, cli):
    env.write_manifest(MANIFEST)
    configure(env, PING_URL=f"mailto://hc-ping.com/{CHECK}", PING_TIMEOUT="soon")
    err = refused(env, cli)
    assert f"{env.config}: PING_URL: expected an http:// or https:// URL" in err
    assert f"{env.config}: PING_TIMEOUT: expected seconds > 0, got 'soon'" in err
    assert CHECK not in err


def test_validate_refuses_a_ping_url_that_is_not_a_string(env, cli):
    env.write_manifest(MANIFEST.replace(f"ping_url: https://hc-ping.com/{CHECK}", "ping_url: [a]"))
    code, _, err = cli(*env.args("validate"))
    assert code == 2 and "tasks[1] (report): ping_url: Input should be a valid string" in err


def test_the_diff_of_install_shows_ping_urls_masked(env, cli):
    configure(env, PING_URL=f"https://hc-ping.com/{KEY}/{{name}}")
    env.write_manifest(MANIFEST)
    code, out, err = cli(*env.args("install", "--dry-run"))
    assert code == 0, err
    assert "hc-ping.com/***/backup" in out
    assert KEY not in out and CHECK not in out


def loaded(env):
    settings = load_settings(env.config)
    return settings, load_manifest(env.manifest, settings)


def test_doctor_shows_ping_urls_masked_and_flags_what_cannot_work(env, cli):
    configure(env, PING_URL=f"http://nonexistent.invalid/{KEY}/{{name}}")
    env.write_manifest(MANIFEST + '  - {name: Upper, schedule: "@daily", command: "true"}\n')
    assert cli(*env.args("install"))[0] == 0
    settings, manifest = loaded(env)
    findings = doctor.check_ping_urls(settings, manifest)
    text = json.dumps([f.__dict__ for f in findings])
    assert KEY not in text and CHECK not in text
    unresolved = [f for f in findings if "nonexistent.invalid does not resolve" in f.detail]
    assert [f.detail for f in unresolved] == ["ping host nonexistent.invalid does not resolve"]
    assert not unresolved[0].ok and "resolv.conf" in unresolved[0].fix
    [upper] = [f for f in findings if f.task == "Upper"]
    assert not upper.ok and "slugs are lowercase" in upper.detail
    assert upper.fix == "give task Upper its own ping_url ending in upper, then agency-cron install"
    assert "http://nonexistent.invalid/***/Upper" in upper.detail


def test_doctor_passes_local_ping_urls(env, cli):
    env.write_manifest(MANIFEST.replace(f"https://hc-ping.com/{CHECK}", "http://127.0.0.1:9/p"))
    settings, manifest = loaded(env)
    [finding] = doctor.check_ping_urls(settings, manifest)
    assert finding.ok and finding.detail == "1 task(s) ping; their URLs parse and resolve"
    configure(env, PING_URL="")
    env.write_manifest(MANIFEST.replace(f"ping_url: https://hc-ping.com/{CHECK}", "ping_url: none"))
    [finding] = doctor.check_ping_urls(*loaded(env))
    assert finding.ok and finding.detail.startswith("no ping URLs configured")


def test_doctor_counts_a_ping_key_in_the_config_as_a_secret(env, cli):
    configure(env, PING_URL=f"https://hc-ping.com/{KEY}/{{name}}")
    env.config.chmod(0o644)
    env.write_manifest(MANIFEST)
    [finding] = doctor.check_config_permissions(load_settings(env.config))
    assert not finding.ok and "PING_URL" in finding.detail and KEY not in finding.detail


def test_api_definitions_mask_the_ping_url_and_keep_it_when_sent_back():
    document = {"name": "report", "ping_url": f"https://user:pw12@hc-ping.com/{CHECK}"}
    shown = admin.masked(document)
    assert shown["ping_url"] == "https://***:***@hc-ping.com/***"
    assert admin.unmasked(shown, document)["ping_url"] == document["ping_url"]
    edited = {**shown, "ping_url": "https://hc-ping.com/***/other"}
    assert admin.unmasked(edited, document)["ping_url"] == "https://hc-ping.com/***/other"


def test_kubernetes_keeps_the_ping_url_out_of_the_configmap(env):
    import yaml

    from agency_cron.backends import kubernetes as k8s

    configure(env, PING_URL=f"https://hc-ping.com/{KEY}/{{name}}", PING_TIMEOUT="7")
    env.write_manifest(MANIFEST)
    settings, manifest = loaded(env)
    enabled = [(task, task.enabled) for task in manifest.tasks]
    text = k8s.export(settings, enabled, "registry.example/agency:1", "ops")
    assert KEY not in text and CHECK not in text
    documents = list(yaml.safe_load_all(text))
    specs = {k: json.loads(v) for k, v in documents[0]["data"].items()}
    assert "ping_url" not in specs["backup.json"] and specs["backup.json"]["ping_timeout"] == 7
    jobs = {d["metadata"]["name"]: d for d in documents if d["kind"] == "CronJob"}

    def env_of(name: str) -> dict:
        pod = jobs[name]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        return {item["name"]: item for item in pod["containers"][0]["env"]}

    ref = env_of("backup")["AGENCY_CRON_PING_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "agency-cron-secrets", "key": "PING_URL.backup", "optional": True}
    assert "AGENCY_CRON_PING_URL" not in env_of("quiet")
    deadline = jobs["backup"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    quiet = jobs["quiet"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert deadline["activeDeadlineSeconds"] - quiet["activeDeadlineSeconds"] == 7
