"""`agency-cron serve`: the admin API and the live dashboard (see app.py)."""

from __future__ import annotations

import ipaddress

from agency_cron.errors import ConfigError, UsageError

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8765


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def build(context, host: str, insecure_localhost: bool):
    """The application for `context`, after the checks that decide whether it may start:
    the config and manifest load, and either a token is configured or the caller chose
    --insecure-localhost on a loopback address. Raises ConfigError/UsageError (exit 2)."""
    from agency_cron.serve.app import create_app
    from agency_cron.serve.auth import load_tokens

    settings, _, _ = context.load()
    tokens = load_tokens(settings, insecure=insecure_localhost)
    if not tokens.configured and not insecure_localhost:
        raise ConfigError(
            "ADMIN_TOKEN: no token configured; set ADMIN_TOKEN (or ADMIN_TOKEN_FILE) in"
            " config.env, or give --insecure-localhost to serve without one on loopback"
        )
    if insecure_localhost and not is_loopback(host):
        raise UsageError(f"--insecure-localhost: {host} is not a loopback address")
    if settings.metrics_public and not is_loopback(host):
        raise ConfigError(
            "METRICS_PUBLIC: true opens /metrics without a token, on loopback only;"
            f" {host} is not a loopback address (give the scraper ADMIN_READ_TOKEN instead)"
        )
    app = create_app(context, tokens)
    app.state.metrics_public = settings.metrics_public
    return app


def run(context, host: str, port: int, insecure_localhost: bool) -> None:
    """Serve until interrupted (uvicorn handles SIGINT/SIGTERM and finishes requests)."""
    import uvicorn

    app = build(context, host, insecure_localhost)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=True, proxy_headers=False)
