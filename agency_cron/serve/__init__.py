"""`agency-cron serve`: the admin API and the live dashboard (see app.py)."""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket

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
    the config and manifest load, the API_* limits are valid, and either a token is
    configured or the caller chose --insecure-localhost on a loopback address.
    Returns (ASGI app, Limits, RefusalLog). Raises ConfigError/UsageError (exit 2)."""
    from agency_cron.serve.app import create_app
    from agency_cron.serve.auth import load_tokens
    from agency_cron.serve.limits import BodyLimit, load_limits
    from agency_cron.serve.refusals import RefusalLog

    settings, _, _ = context.load()
    tokens = load_tokens(settings, insecure=insecure_localhost)
    limits = load_limits(settings)
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
    refusals = RefusalLog(settings)
    app = create_app(context, tokens, limits.max_body, refusals)
    app.state.metrics_public = settings.metrics_public
    return BodyLimit(app, limits.max_body), limits, refusals


# A stop waits this long for requests in progress (each one is bounded by the header
# timeout and the routes' own work), then cancels them.
GRACE_S = 10


def run(context, host: str, port: int, insecure_localhost: bool) -> None:
    """Serve until SIGINT or SIGTERM, then finish the requests in progress and return (exit
    0: a stop that was asked for is no failure). The socket is bound before uvicorn starts,
    so that a port in use or a bad host is one line and exit 2."""
    import uvicorn

    from agency_cron.serve.protocol import Server, protocol_class

    app, limits, refusals = build(context, host, insecure_localhost)
    sockets = bind(host, port)
    config = uvicorn.Config(
        app,
        http=protocol_class(limits),
        ws="none",  # no WebSocket routes: no upgrade that would leave the guarded protocol
        log_level="info",
        access_log=True,
        proxy_headers=False,
        timeout_graceful_shutdown=GRACE_S,
    )
    server = Server(config)
    logging.getLogger("uvicorn.error").info(
        "agency-cron serve on http://%s (Press CTRL+C to quit)", _address(host, port)
    )
    try:
        server.run(sockets=sockets)
    finally:
        refusals.flush()
        for sock in sockets:
            sock.close()


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for the addresses `host` names; UsageError (exit 2) in one line if
    the name does not resolve or an address cannot be bound. As asyncio does, an address
    of a family the machine lacks (`localhost` as ::1 without IPv6) is skipped while
    another one can be bound."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        why = exc.strerror if isinstance(exc, socket.gaierror) else "not a host name"
        raise UsageError(f"--host: {host!r}: cannot resolve it ({why})") from None
    sockets: list[socket.socket] = []
    unavailable: OSError | None = None
    try:
        for family, kind, proto, _, address in dict.fromkeys(found):
            try:
                sockets.append(_listen(family, kind, proto, address))
            except OSError as exc:
                if exc.errno != errno.EADDRNOTAVAIL:
                    raise
                unavailable = unavailable or exc
        if not sockets:
            raise unavailable or OSError(errno.EADDRNOTAVAIL, "no address to listen on")
    except OSError as exc:
        for sock in sockets:
            sock.close()
        option = BIND_OPTION.get(exc.errno or 0, "--host/--port")
        why = (exc.strerror or str(exc)).lower()
        raise UsageError(f"{_address(host, port)}: {why} ({option})") from None
    return sockets


# Which option to change for each reason a bind fails.
BIND_OPTION = {errno.EADDRINUSE: "--port", errno.EACCES: "--port", errno.EADDRNOTAVAIL: "--host"}


def _listen(family, kind, proto, address) -> socket.socket:
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio does
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
