"""The one rule for secrets: which values are secret, and how they are masked everywhere.

Secrets are the values of variables named *_TOKEN, *_PASSWORD, *_SECRET or *_KEY (any case)
and the credentials inside URLs (Apprise alert URLs, check URLs). They never reach logs,
alerts, diffs, listings or the process list: every module that shows text asks this one.

The runner imports this module on every run, so it imports nothing at load time: urllib.parse
(it brings re) and re are imported inside the functions that need them, and the log-record
filter is a plain object with a `filter` method (what logging accepts), not a logging.Filter.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs the runner milliseconds; only the type checker reads these
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

MARKER = "***"
SECRET_SUFFIXES = ("_TOKEN", "_PASSWORD", "_SECRET", "_KEY")
# Shorter values ("1", "yes", "no") would mask ordinary words and protect nothing.
MIN_SECRET_LEN = 4
# Query keys whose values are credentials (matched as substrings: access_token, apikey...).
SECRET_KEY_WORDS = ("token", "key", "secret", "pass", "auth")
# Apprise puts tokens in the path; shorter segments are ids or words, not credentials.
MIN_PATH_SECRET_LEN = 8


def is_secret_name(name: str) -> bool:
    """True for variable names whose values must never be shown (case-insensitive)."""
    return name.upper().endswith(SECRET_SUFFIXES)


def worth_masking(values: Iterable[str]) -> list[str]:
    """The values long enough to mask, each once, sorted."""
    return sorted({value for value in values if len(value) >= MIN_SECRET_LEN})


def secret_values(variables: Mapping[str, str]) -> list[str]:
    """The values of the secret-named variables (a config, an environment) worth masking."""
    return worth_masking(value for name, value in variables.items() if is_secret_name(name))


def _with_decoded(values: list[str]) -> list[str]:
    """Each value and its percent-decoded form: output may show either."""
    from urllib.parse import unquote

    return [form for value in values for form in {value, unquote(value)}]


def _without_port(hostport: str) -> str:
    """host:PORT without its port (a port number is no secret)."""
    host, colon, port = hostport.rpartition(":")
    is_port = colon and 1 <= len(port) <= 5 and port.isascii() and port.isdigit()
    return host if is_port else hostport


def _netloc_secrets(netloc: str) -> list[str]:
    """The user and password of `user:pass@`, and a host that is really a token.

    Apprise URLs such as tgram://BOTID:TOKEN/CHAT put the token where a host would be;
    a real host name or IP address has a dot (or brackets) and is not a secret.
    """
    userinfo, _, hostport = netloc.rpartition("@")
    found = list(userinfo.partition(":")[::2]) if userinfo else []
    host = _without_port(hostport)
    if "." not in host and not host.startswith("[") and host != "localhost":
        found += [host, *host.split(":")]
    return found


def secrets_of_urls(urls: list[str]) -> list[str]:
    """Substrings of Apprise URLs that are credentials and must be redacted anywhere they appear:
    the whole URL, the password and user of the userinfo part (user:pass@), query values of keys
    like token/key/secret/password/pass/apikey, and path segments of 8+ chars (Apprise puts tokens
    in the path, e.g. tgram://BOTTOKEN/CHATID, discord://webhook_id/webhook_token).
    Only strings of at least MIN_SECRET_LEN characters, longest first."""
    from urllib.parse import parse_qsl

    found: list[str] = []
    for url in urls:
        # Split by hand: Apprise URLs are not always valid for urlsplit (tokens with ':').
        rest = url.partition("://")[2] or url
        rest, _, query = rest.split("#", 1)[0].partition("?")
        netloc, _, path = rest.partition("/")
        found += [url, *_netloc_secrets(netloc)]
        found += [seg for seg in path.split("/") if len(seg) >= MIN_PATH_SECRET_LEN]
        pairs = parse_qsl(query, keep_blank_values=True)
        found += [v for k, v in pairs if any(w in k.lower() for w in SECRET_KEY_WORDS)]
    return sorted(worth_masking(_with_decoded(found)), key=lambda s: (-len(s), s))


def url_credentials(url: str) -> list[str]:
    """The credentials inside one Apprise URL (secrets_of_urls without the whole URL)."""
    from urllib.parse import unquote

    whole = {url, unquote(url)}
    return [secret for secret in secrets_of_urls([url]) if secret not in whole]


def masked_url(url: str) -> str:
    """An Apprise URL with its credentials masked, for showing it (the scheme and host stay)."""
    return redact(url, url_credentials(url))


def password_of_url(url: str) -> list[str]:
    """The password in a URL's userinfo, plain and percent-decoded (empty if none or invalid)."""
    from urllib.parse import unquote, urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    raw = parts.netloc.rpartition("@")[0].partition(":")[2]
    return [s for s in {raw, unquote(raw)} if s]


def without_password(url: str) -> str:
    """The URL with the password of user:password@ replaced by the marker, for showing it."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{MARKER}@{host}"))


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret (longest first) with the marker."""
    # Longest first, so a secret containing another is masked whole, not left half-visible.
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MARKER)
    return text


class Redactor:
    """Replaces secret values in a byte stream, including ones split across two chunks.

    The last len(longest secret) - 1 bytes are held back until the next chunk, and only
    matches that start before that tail are replaced, longest first: a short secret inside
    a longer one split by a chunk boundary must not be masked early, or the rest of the
    longer one would get through.
    """

    def __init__(self, secrets: Iterable[str]):
        values = sorted({s.encode() for s in secrets if s}, key=len, reverse=True)
        self.keep = max((len(s) for s in values), default=1) - 1
        self.pattern: Any = None
        if values:
            import re  # only when there is something to mask: the run path skips it otherwise

            self.pattern = re.compile(b"|".join(re.escape(v) for v in values))
        self.carry = b""

    def feed(self, data: bytes) -> bytes:
        """The part of the stream so far that is safe to write, masked."""
        if self.pattern is None:
            return data
        buffer = self.carry + data
        cut = max(0, len(buffer) - self.keep)
        pieces, position = [], 0
        for match in self.pattern.finditer(buffer):
            if match.start() >= cut:
                break
            pieces += [buffer[position : match.start()], MARKER.encode()]
            position = match.end()
        end = max(position, cut)
        pieces.append(buffer[position:end])
        self.carry = buffer[end:]
        return b"".join(pieces)

    def flush(self) -> bytes:
        """What was held back, masked: the stream has ended."""
        rest, self.carry = self.carry, b""
        return self.replace(rest)

    def replace(self, data: bytes) -> bytes:
        """One whole piece of bytes, masked."""
        return data if self.pattern is None else self.pattern.sub(MARKER.encode(), data)


class RecordRedactor:
    """A logging filter (any object with `filter` will do) masking secrets in log records."""

    def __init__(self, secrets: Iterable[str]):
        self.secrets = list(secrets)

    def filter(self, record: Any) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a library's bad format string must not break the send
            message = str(record.msg)
        record.msg, record.args = redact(message, self.secrets), ()
        return True


# --- heartbeat ping URLs (ping.py) ---------------------------------------------------------

PING_PLACEHOLDER = "{name}"  # a PING_URL template's task name: a slug, not a secret
# A path segment this long, of letters and digits (healthchecks' ping keys have 22), is a key.
KEY_SEGMENT_LEN = 16
UUID_PATTERN = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"


def ping_url_secrets(url: str, name: str | None = None) -> list[str]:
    """Substrings of a ping URL that are secrets, longest first: the whole URL, the user and
    password of `user:pass@`, every UUID in it (hc-ping.com/UUID: whoever knows it can ping
    the check), the ping key of a slug URL (hc-ping.com/PING_KEY/SLUG), other key-like path
    segments, and query values of token/key/secret/pass/auth keys. The slug, words like
    `ping` and the task's `name` are not secrets: masking them would mask every log line
    that names the task. Works on a URL that does not parse too (messages quote those)."""
    import re
    from urllib.parse import parse_qsl

    whole = url.strip()
    rest = whole.partition("://")[2] or whole
    netloc, _, path = rest.partition("/")
    path, _, query = path.partition("?")
    found = [whole, *re.findall(UUID_PATTERN, whole)]
    userinfo = netloc.rpartition("@")[0]
    if userinfo:
        found += userinfo.split(":", 1)
    segments = [s for s in re.split(r"[/\s]+", path) if s]
    found += [s for s in segments if _is_key(s, name)]
    slug = len(segments) >= 2 and segments[-1] in (name, PING_PLACEHOLDER)
    if slug and len(segments[-2]) >= KEY_SEGMENT_LEN:
        found.append(segments[-2])  # the project's ping key, before the slug
    pairs = parse_qsl(query.partition("#")[0], keep_blank_values=True)
    found += [v for k, v in pairs if any(w in k.lower() for w in SECRET_KEY_WORDS)]
    kept = [s for s in _with_decoded(found) if s not in (name, PING_PLACEHOLDER)]
    return sorted(worth_masking(kept), key=lambda s: (-len(s), s))


def _is_key(segment: str, name: str | None) -> bool:
    if segment in (name, PING_PLACEHOLDER):
        return False
    if _is_uuid(segment.lower()):
        return True
    return (
        len(segment) >= KEY_SEGMENT_LEN
        and all(c.isalnum() or c in "-_" for c in segment)
        and any(c.isdigit() for c in segment)
        and any(c.isalpha() for c in segment)
    )


def _is_uuid(text: str) -> bool:
    groups = text.split("-")
    return [len(g) for g in groups] == [8, 4, 4, 4, 12] and all(
        c in "0123456789abcdef" for c in text.replace("-", "")
    )


def masked_ping_url(url: str, name: str | None = None) -> str:
    """A ping URL as messages and listings show it: https://hc-ping.com/***."""
    whole = url.strip()
    return redact(whole, [s for s in ping_url_secrets(url, name) if s != whole])
