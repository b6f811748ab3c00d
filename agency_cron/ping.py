"""Heartbeat pings in the healthchecks.io protocol: a monitor outside the host learns of
every run, and of the runs that never came (cron stopped, the host is down).

One run: `GET URL/start?rid=RID` once it holds its lock, then one final ping when it ends:
`POST URL?rid=RID` on success, `POST URL/EXIT_CODE?rid=RID` for a failure with an exit
code, `POST URL/fail?rid=RID` for a timeout, a kill or a lost run. The body of the final
ping is the last lines of output (redacted by the runner), at most BODY_LIMIT bytes. RID is
a canonical UUID (healthchecks.io answers 400 to anything else), derived from the run id,
so that a run's start and end pair up, retries of one run share it, and whoever later
finds a run `lost` pings its /fail with the same RID.

Standard library only, and cheap to import: the runner imports this module only for a
task that pings. The pings themselves are sent by a helper process forked at the run's
start (Pinger): the runner stays single-threaded (it forks the task afterwards, and a fork
beside a thread may deadlock the child), and the start ping travels while the command
runs. The helper writes its requests over a plain socket (`_socket`; `ssl` for https;
urllib, ~40 ms to import, only behind a proxy). PING_TIMEOUT bounds how long the run waits for
all its pings together; the helper is killed when that time is spent, so a server that
never answers, or a name that never resolves, costs the run at most PING_TIMEOUT and never
changes its exit code.
"""

from __future__ import annotations

import os
import select
import time

from agency_cron import statuses
from agency_cron.secrets import masked_ping_url

try:  # the C module: `signal` wraps it in enums, whose import costs more than a run of `true`
    import _signal as signal
except ImportError:  # another Python implementation
    import signal

DEFAULT_TIMEOUT = 10.0
BODY_LIMIT = 10_000  # bytes; healthchecks.io keeps the first 100 kB of a body by default
NONE = "none"  # `ping_url: none`: this task does not ping, whatever PING_URL says
PLACEHOLDER = "{name}"
USER_AGENT = "agency-cron"
# Retries back off from FIRST_BACKOFF_S; one request never takes more than half the budget,
# so a server that accepts and then hangs still leaves time for one more try.
FIRST_BACKOFF_S = 0.25
# The helper aims to report before the runner stops waiting for it.
REPORT_MARGIN_S = 0.1
# Failures that asking again cannot cure (by class name: ssl is imported only for https).
PERMANENT_ERRORS = ("SSLCertVerificationError", "CertificateError")


# --- configuration: templates, validation, masking --------------------------------------


def resolve(template: str | None, name: str) -> str | None:
    """The URL a task pings: its template with {name} filled in; None for no pings."""
    if template is None or not template.strip() or template.strip().lower() == NONE:
        return None
    return template.strip().replace(PLACEHOLDER, name)


def problem(template: str) -> str | None:
    """What is wrong with a ping URL template (PING_URL, ping_url), or None. The message
    quotes the URL with its secrets masked."""
    text = template.strip()
    if text.lower() == NONE:
        return None
    if any(c.isspace() or not c.isprintable() for c in text):
        return f"must not contain spaces or control characters, got {masked_ping_url(text)}"
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text.replace(PLACEHOLDER, "name"))
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        return f"cannot parse {masked_ping_url(text)}: {exc}"
    if parts.scheme.lower() not in ("http", "https"):
        return f"expected an http:// or https:// URL (or none), got {masked_ping_url(text)}"
    if not parts.hostname:
        return f"has no host: {masked_ping_url(text)}"
    if parts.fragment or "#" in text:
        return f"must not have a #fragment: {masked_ping_url(text)}"
    if "{" in text.replace(PLACEHOLDER, "") or "}" in text.replace(PLACEHOLDER, ""):
        return f"the only placeholder is {PLACEHOLDER}, got {masked_ping_url(text)}"
    return None


# --- the run id healthchecks.io pairs the pings by -------------------------------------


def rid_of(run_id: str) -> str:
    """A canonical UUID (lowercase 8-4-4-4-12, version 4 bits) derived from the run id:
    random as the run id is, and found again from history for a lost run."""
    try:
        from _blake2 import blake2b
    except ImportError:  # another Python implementation
        from hashlib import blake2b
    raw = bytearray(blake2b(run_id.encode(), digest_size=16, person=b"agency-cron-rid").digest())
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def signal_of(status: str, code: int | None) -> str:
    """Which final ping a run gets: "success", "fail", or the exit code of a failure."""
    if status == statuses.SUCCESS:
        return "success"  # the ping's own word (success, fail or an exit code)
    if status == statuses.FAILED and code is not None and 0 < code <= 255:
        return str(code)
    return "fail"  # timeout, killed, lost, or a failure without an exit code


def ping_url(base: str, action: str, rid: str) -> str:
    """base + /action (none for success) + ?rid=RID, keeping a query base already has
    (hc-ping.com/KEY/slug?create=1)."""
    path, _, query = base.partition("?")
    path = path.rstrip("/") + ("" if action == "success" else f"/{action}")
    return f"{path}?{query + '&' if query else ''}rid={rid}"


def body(header: str, tail: bytes) -> bytes:
    """The final ping's body: one line about the run, then the last lines of output that
    fit in BODY_LIMIT bytes (cut at a line start, never inside a character)."""
    first = header.encode("utf-8", "replace") + b"\n"
    room = max(0, BODY_LIMIT - len(first))
    if len(tail) > room:
        tail = tail[len(tail) - room :]
        cut = tail.find(b"\n")
        tail = tail[cut + 1 :] if 0 <= cut < len(tail) - 1 else tail
    return first + tail.decode("utf-8", "ignore").encode("utf-8")


# --- sending: what the runner calls ------------------------------------------------------


class RunPings:
    """A run's pings: start() once it holds its lock, end() when it is over, lost() for an
    earlier run found dead; all within one PING_TIMEOUT budget. Never raises: a ping is
    never worth a run."""

    def __init__(self, url: str, run_id: str, timeout: float):
        self.url, self.budget = url, Budget(timeout)
        self.rid = rid_of(run_id)
        self.pinger = Pinger(url, run_id, self.budget)

    def start(self) -> None:
        try:
            self.pinger.start()
        except Exception:  # noqa: BLE001 - finish() then reports the helper missing
            self.pinger.pid = None

    def end(self, status: str, code: int | None, data: bytes) -> tuple[str, str]:
        """The final ping of this run; (the signal sent, its outcome)."""
        action = signal_of(status, code)
        return action, _guarded(lambda: self.pinger.finish(action, data))

    def lost(self, run_id: str, data: bytes) -> str:
        """/fail for an earlier run whose runner died, with that run's own rid."""
        return _guarded(lambda: Pinger(self.url, run_id, self.budget).finish("fail", data))

    def close(self) -> None:
        try:
            self.pinger.close()
        except Exception:  # noqa: BLE001, S110 - the helper ends with us anyway
            pass


def _guarded(send) -> str:
    try:
        return send()
    except Exception as exc:  # noqa: BLE001 - an outcome, never a crash of the run
        return f"failed ({type(exc).__name__}: {exc})"[:300]


# --- sending: a helper process per run --------------------------------------------------


class Budget:
    """PING_TIMEOUT: the seconds a run may wait for its pings, all of them together."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.spent = 0.0

    def left(self) -> float:
        return max(0.0, self.seconds - self.spent)


class Pinger:
    """The pings of one run (or of one lost run), sent by a forked helper process.

    start() forks the helper, which sends the start ping and waits; finish() hands it the
    final ping, waits at most what is left of the budget, and returns the outcome, a short
    text for the log and history ("ok", "failed (HTTP 404)", "failed (timed out after
    10s)"). The helper closes every descriptor it inherited (the task's lock among them),
    ignores the signals that stop the runner (a kill must still be pinged /fail), and exits
    on its own when the runner dies (its pipe reads end of file)."""

    def __init__(self, url: str, run_id: str, budget: Budget):
        self.url, self.rid, self.budget = url, rid_of(run_id), budget
        self.pid: int | None = None
        self.to_helper = self.from_helper = -1
        self.started_at = 0.0

    def start(self) -> None:
        """Fork the helper and let it send the start ping; never raises."""
        if self.budget.left() > REPORT_MARGIN_S:  # else finish() says why nothing was sent
            self._spawn(with_start=True)

    def finish(self, action: str, data: bytes) -> str:
        """Send the final ping (`action`: success, fail or an exit code); the outcome."""
        if self.budget.left() <= REPORT_MARGIN_S:  # earlier pings (of lost runs) spent it
            self.close()
            return f"not sent: PING_TIMEOUT ({self.budget.seconds:g}s) spent on earlier pings"
        if self.pid is None:
            self._spawn(with_start=False)
        if self.pid is None:
            return "failed (could not start the ping helper)"
        left = self.budget.left()
        began = time.monotonic()
        deadline = began + left
        message = f"{action} {deadline - REPORT_MARGIN_S!r}\n".encode() + data
        sent = _write_all(self.to_helper, message)
        os.close(self.to_helper)
        lines = _read_lines(self.from_helper, deadline) if sent else {}
        self.budget.spent += time.monotonic() - began
        self._end_helper()
        return _outcome(lines, left)

    def close(self) -> None:
        """A run that never sent its final ping (it was skipped after all): end the helper."""
        if self.pid is not None:
            os.close(self.to_helper)
            self._end_helper()

    def _spawn(self, with_start: bool) -> None:
        try:
            down_read, self.to_helper = os.pipe()
            self.from_helper, up_write = os.pipe()
        except OSError:
            return
        self.started_at = time.monotonic()
        deadline = self.started_at + self.budget.left()
        try:
            pid = os.fork()
        except OSError:
            for fd in (down_read, self.to_helper, self.from_helper, up_write):
                os.close(fd)
            return
        if pid == 0:
            _helper(self.url, self.rid, with_start, deadline, down_read, up_write)
        self.pid = pid
        os.close(down_read)
        os.close(up_write)

    def _end_helper(self) -> None:
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        os.close(self.from_helper)
        self.pid = None


def _write_all(fd: int, data: bytes) -> bool:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError:  # the helper is gone
        return False
    return True


def _read_lines(fd: int, deadline: float) -> dict[str, str]:
    """The helper's report, "start OUTCOME" and "final OUTCOME" lines, read until the
    final one or the deadline."""
    data, lines = b"", {}
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    while "final" not in lines:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break  # the helper is gone
        data += chunk
        complete, _, data = data.rpartition(b"\n")
        for line in complete.decode("utf-8", "replace").splitlines():
            kind, _, text = line.partition(" ")
            lines[kind] = text
    return lines


def _outcome(lines: dict[str, str], budget: float) -> str:
    final = lines.get("final") or f"failed (timed out after {budget:g}s)"
    start = lines.get("start")
    if start and not start.startswith("ok"):
        return f"{final}; start {start}"
    return final


def _helper(url, rid, with_start, deadline, commands, report) -> None:
    """In the forked helper: send the pings, report, exit; never returns."""
    try:
        _detach(commands, report)
        if with_start:
            start = _deliver("GET", ping_url(url, "start", rid), None, deadline, commands)
            _write_all(report, f"start {start}\n".encode())
        message = _read_message(commands)
        if message:
            header, _, data = message.partition(b"\n")
            action, final_deadline = header.decode().split(" ")
            target = ping_url(url, action, rid)
            outcome = _deliver("POST", target, data, float(final_deadline), None)
            _write_all(report, f"final {outcome}\n".encode())
    finally:
        os._exit(0)


def _detach(commands: int, report: int) -> None:
    """Nothing of the runner's but our two pipes; stdio on /dev/null; the signals that
    stop a run ignored (the runner ends us with SIGKILL once it stops waiting)."""
    try:
        signal.set_wakeup_fd(-1)
    except (ValueError, OSError):
        pass
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_IGN)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    keep = sorted({0, 1, 2, commands, report})
    for low, high in zip(keep, [*keep[1:], 1 << 20], strict=True):
        os.closerange(low + 1, high)


def _read_message(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _deliver(method: str, url: str, data: bytes | None, deadline: float, interrupt) -> str:
    """One ping, retried with backoff on connection errors, 429 and 5xx until `deadline`
    (monotonic). A start ping gives way as soon as the final one is waiting (`interrupt`
    readable): the final one matters more."""
    tries, pause, last = 0, FIRST_BACKOFF_S, "failed (no time left of PING_TIMEOUT)"
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return last
        tries += 1
        try:
            status = _send(method, url, data, min(left, max(0.5, left / 2)))
            if 200 <= status < 300:
                return "ok" if tries == 1 else f"ok after {tries} tries"
            last = _tried(f"HTTP {status}", tries)
            if status < 500 and status != 429:
                return last  # the URL or the request is wrong: asking again changes nothing
        except Exception as exc:  # noqa: BLE001 - any failure is an outcome, never a crash
            last = _tried(_reason(exc), tries)
            if type(exc).__name__ in PERMANENT_ERRORS:
                return last  # a certificate that does not verify will not verify in 1 s
        wait = min(pause, deadline - time.monotonic())
        if wait <= 0:
            return last
        if interrupt is not None and _readable(interrupt, wait):
            return last
        if interrupt is None:
            time.sleep(wait)
        pause *= 2


def _send(method: str, url: str, data: bytes | None, timeout: float) -> int:
    """One request; the answer's HTTP status. Straight over a socket (plain http imports
    `_socket` only, https adds `ssl`: urllib.request would cost ~40 ms more on every run
    that pings); through urllib when the environment names a proxy for the scheme, since
    urllib knows proxies and no_proxy."""
    scheme, _, rest = url.partition("://")
    netloc, _, target = rest.partition("/")
    userinfo, _, hostport = netloc.rpartition("@")
    headers = [f"User-Agent: {USER_AGENT}"]
    if userinfo:
        from binascii import b2a_base64
        from urllib.parse import unquote

        token = b2a_base64(unquote(userinfo).encode(), newline=False).decode()
        headers.append(f"Authorization: Basic {token}")
    if data is not None:
        headers += ["Content-Type: text/plain; charset=utf-8", f"Content-Length: {len(data)}"]
    if os.environ.get(f"{scheme}_proxy") or os.environ.get(f"{scheme.upper()}_PROXY"):
        return _send_by_urllib(method, f"{scheme}://{hostport}/{target}", data, headers, timeout)
    https = scheme.lower() == "https"
    host, port = _host_port(hostport, 443 if https else 80)
    head = [f"{method} /{target} HTTP/1.1", f"Host: {hostport}", *headers, "Connection: close"]
    sock = _connect(host, port, timeout, https)
    try:
        sock.sendall("\r\n".join([*head, "", ""]).encode("latin-1") + (data or b""))
        return _status(sock)
    finally:
        sock.close()


def _host_port(hostport: str, default: int) -> tuple[str, int]:
    if hostport.startswith("["):  # an IPv6 literal: [::1]:8000
        host, _, rest = hostport[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default
    host, _, port = hostport.partition(":")
    return host, int(port) if port else default


def _connect(host: str, port: int, timeout: float, https: bool):
    if https:
        import socket
        import ssl

        plain = socket.create_connection((host, port), timeout)
        return ssl.create_default_context().wrap_socket(plain, server_hostname=host)
    import _socket

    error: OSError = OSError("no address")
    for family, kind, proto, _, address in _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM):
        sock = _socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error


def _status(sock) -> int:
    """The status code of the answer's first line."""
    data = b""
    while b"\r\n" not in data and len(data) < 4096:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    if not data:
        raise ConnectionError("the server closed the connection without an answer")
    version, _, rest = data.partition(b"\r\n")[0].partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/") or not code.isdigit():
        raise ValueError("the answer is not HTTP")
    return int(code)


def _send_by_urllib(method, url, data, headers, timeout) -> int:
    import urllib.error
    import urllib.request

    fields = dict(h.split(": ", 1) for h in headers if not h.startswith("Content-Length"))
    request = urllib.request.Request(url, data=data, headers=fields, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(1024)
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _tried(reason: str, tries: int) -> str:
    return f"failed ({reason})" if tries == 1 else f"failed ({reason}, {tries} tries)"


def _reason(exc: BaseException) -> str:
    """A short reason without the URL (it carries the check's secret)."""
    if getattr(exc, "verify_message", None):  # ssl.SSLCertVerificationError
        return f"certificate verify failed: {exc.verify_message}"  # type: ignore[attr-defined]
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return "no answer in time"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return type(reason).__name__ if not str(reason) else str(reason)[:200]


def _readable(fd: int, seconds: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    return bool(poller.poll(seconds * 1000))
