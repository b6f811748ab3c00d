"""What other web sites can make a browser send to the admin API: refused.

A page anywhere can post a form to 127.0.0.1 or point a name of its own there (DNS
rebinding). The server runs for real on 127.0.0.1; requests carry the headers a browser
would add.
"""

from __future__ import annotations

import json

ADMIN_TOKEN = "admin-0123456789abcdef-secret"


def audit_lines(env) -> list[dict]:
    path = env.state_dir / "api" / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_cross_site_form_post_is_refused_and_runs_nothing(api):
    before = api.env.crontab.read_bytes()
    with api.client() as client:
        for headers in (
            {"Origin": "https://evil.example"},
            {"Sec-Fetch-Site": "cross-site"},
            {"Origin": "null"},  # sandboxed frames and file: pages
        ):
            response = client.post("/api/tasks/nightly/actions/pause", headers=headers)
            assert response.status_code == 403, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
            assert "cross-site" in response.json()["detail"]
        assert client.get("/api/tasks/nightly").json()["enabled"] is True
    assert api.env.crontab.read_bytes() == before
    # Nothing done, only the three refusals recorded (tests/integration/test_serve_hardening.py).
    assert [(e["outcome"], e["detail"]["status"]) for e in audit_lines(api.env)] == [
        ("refused", 403)
    ] * 3


def test_the_page_own_origin_is_accepted(api):
    origin = api.url  # what the live dashboard's fetch sends on a POST
    with api.client() as client:
        response = client.post(
            "/api/tasks/nightly/actions/pause",
            headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["enabled"] is False


def test_without_a_token_only_loopback_host_names_are_served(make_server):
    server = make_server(
        "--insecure-localhost", environ={"ADMIN_TOKEN": "", "ADMIN_READ_TOKEN": ""}
    )
    with server.client(token=None) as client:
        assert client.get("/api/tasks").status_code == 200
        port = server.url.rsplit(":", 1)[1]
        rebound = client.get("/api/tasks", headers={"Host": f"evil.example:{port}"})
        assert rebound.status_code == 403, rebound.text
        assert "loopback" in rebound.json()["detail"]
        assert client.get("/api/tasks", headers={"Host": f"localhost:{port}"}).status_code == 200
