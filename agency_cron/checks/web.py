"""One HTTP request with the standard library, for health checks and integration calls.

urllib follows redirects to ftp: too, and forwards every header to whatever host a redirect
names; here a redirect may only go to http(s), and the caller's headers (tokens, usually)
are dropped when it leaves the original host, as curl does.
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

# Enough of a body to find a marker in it; a health page larger than this is not read whole.
MAX_BODY_BYTES = 1024 * 1024
USER_AGENT = "agency-cron-checks"


class FetchError(Exception):
    """The request got no HTTP response; the message says why, without the URL."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follows http(s) redirects only; drops the caller's headers on a change of host."""

    def __init__(self, own_headers: list[str]):
        self.own_headers = own_headers

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        scheme = urlsplit(newurl).scheme
        if scheme not in ("http", "https"):
            raise FetchError(f"refused a redirect ({code}) to a {scheme or 'relative'}: URL")
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urlsplit(newurl).netloc != urlsplit(req.full_url).netloc:
            for name in self.own_headers:
                new.remove_header(name.capitalize())
        return new


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Leaves a 3xx as the response, so a check can expect the redirect itself."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def fetch(
    url: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: str | None = None,
    timeout: float = 10,
    follow_redirects: bool = True,
) -> Response:
    """Send one request; return the final status and up to MAX_BODY_BYTES of the body.

    A 4xx or 5xx is a Response, not an error. Raises FetchError when no response came
    (refused, timed out, DNS, TLS, a refused redirect).
    """
    url, headers = _credentials_to_header(url, dict(headers or {}))
    headers.setdefault("User-Agent", USER_AGENT)
    data = body.encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    handler = _Redirects(list(headers)) if follow_redirects else _NoRedirects()
    opener = urllib.request.build_opener(handler)
    try:
        with opener.open(request, timeout=timeout) as reply:
            return Response(reply.status, reply.read(MAX_BODY_BYTES))
    except urllib.error.HTTPError as exc:
        with exc:
            return Response(exc.code, _read_quietly(exc))
    except FetchError:
        raise
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        raise FetchError(describe_error(exc, timeout)) from None


def _credentials_to_header(url: str, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    """Move user:password@ from the URL into Basic auth, as curl does (urllib cannot).

    A header the caller gave wins; the URL sent on never carries the credentials.
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, headers
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
    if not any(name.lower() == "authorization" for name in headers):
        headers["Authorization"] = f"Basic {token}"
    return urlunsplit(parts._replace(netloc=host)), headers


def _read_quietly(reply) -> bytes:
    try:
        return reply.read(MAX_BODY_BYTES)
    except (OSError, http.client.HTTPException):
        return b""


def describe_error(exc: BaseException, timeout: float) -> str:
    """A short reason for a failed connection: 'connection refused', 'timed out after 5s'..."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError | socket.timeout):
        return f"timed out after {timeout:g}s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve host: {reason.strerror}"
    if isinstance(reason, ssl.SSLError):
        return f"TLS error: {reason.reason or reason}"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower() if reason.strerror[:1].isupper() else reason.strerror
    return str(reason) or type(reason).__name__


def judge(reply: Response, status: int, contains: str | None, took: float) -> tuple[bool, str]:
    """(ok, detail) for a response that should have `status` and, if given, contain `contains`."""
    if reply.status != status:
        return False, f"expected {status}, got {reply.status}"
    if contains is not None and contains.encode() not in reply.body:
        return False, f"{reply.status}, but the body does not contain {contains!r}"
    return True, f"{reply.status} in {took:.2f}s"
