"""Bearer tokens for the admin API: one that may change things, one that may only read.

Tokens come from config.env or the environment (ADMIN_TOKEN, ADMIN_READ_TOKEN) or from
files (ADMIN_TOKEN_FILE, ADMIN_READ_TOKEN_FILE), so that a secrets manager can hand them
over without writing them into config.env. They are compared as SHA-256 digests with
hmac.compare_digest: the time taken depends neither on how much of a wrong token matched
nor on its length, and both tokens are always compared so the role is not timed either.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from agency_cron.config import Settings
from agency_cron.errors import ConfigError

ADMIN, READ = "admin", "read-only"
MIN_LENGTH = 16  # shorter tokens are guessable; refuse to start with one


@dataclass(frozen=True)
class Tokens:
    """Digests of the configured tokens; `insecure` lets every local request in as admin."""

    admin: bytes | None
    read: bytes | None
    insecure: bool = False

    @property
    def configured(self) -> bool:
        return self.admin is not None or self.read is not None


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


def load_tokens(settings: Settings, insecure: bool = False) -> Tokens:
    """The tokens of config.env/the environment or their files; ConfigError if unusable."""
    admin = _token(settings, "ADMIN_TOKEN")
    read = _token(settings, "ADMIN_READ_TOKEN")
    if admin is not None and admin == read:
        raise ConfigError("ADMIN_READ_TOKEN: must differ from ADMIN_TOKEN")
    return Tokens(
        admin=digest(admin) if admin else None,
        read=digest(read) if read else None,
        insecure=insecure,
    )


def _token(settings: Settings, key: str) -> str | None:
    value = settings.get(key).strip()
    file = settings.get(f"{key}_FILE").strip()
    if value and file:
        raise ConfigError(f"{key}: set either {key} or {key}_FILE, not both")
    if file:
        try:
            value = Path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{key}_FILE: {file}: cannot read: {exc.strerror}") from None
    if not value:
        return None
    if len(value) < MIN_LENGTH or any(c.isspace() for c in value):
        raise ConfigError(
            f"{key}: expected at least {MIN_LENGTH} characters without spaces"
            " (for example: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return value


def role_of(tokens: Tokens, presented: str | None) -> str | None:
    """ADMIN, READ or None for a presented bearer token."""
    if tokens.insecure and not tokens.configured:
        return ADMIN
    given = digest(presented or "")
    is_admin = tokens.admin is not None and hmac.compare_digest(given, tokens.admin)
    is_read = tokens.read is not None and hmac.compare_digest(given, tokens.read)
    if presented is None:
        return None
    return ADMIN if is_admin else READ if is_read else None


def matches_any(tokens: Tokens, text: str) -> bool:
    """Whether `text` is one of the tokens (to refuse a token sent in a URL)."""
    given = digest(text)
    found = False
    for expected in (tokens.admin, tokens.read):
        if expected is not None and hmac.compare_digest(given, expected):
            found = True
    return found
