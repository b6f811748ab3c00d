"""The one error type that reaches the top, and its kinds.

Every expected failure (bad input, a missing binary, a crontab that refuses) is an
AgencyCronError; the CLI prints it in one line per problem and exits with `exit_code`.
Anything else is a bug and keeps its traceback.
"""


class AgencyCronError(Exception):
    """Base of every error the CLI reports without a traceback."""

    exit_code = 2

    def __init__(self, *problems: str):
        self.problems = [p for p in problems if p] or ["unknown error"]
        super().__init__("\n".join(self.problems))


class ConfigError(AgencyCronError):
    """config.env or the manifest is wrong; carries every problem found at once."""


class UsageError(AgencyCronError):
    """The command line asks for something that does not exist (an unknown task...)."""


class BackendError(AgencyCronError):
    """A scheduler backend (the crontab binary, a cron.d file) failed; its message is kept."""


class CheckFailed(AgencyCronError):
    """A run or a check failed: exit 1, not a usage error."""

    exit_code = 1


class PathError(AgencyCronError):
    """The OS refused a configured path (full disk, name too long, read-only, not a folder):
    the message names the path and the setting it comes from (layout.path_error)."""


# A value quoted in a message is cut past this many characters: one bad value (a 2 MB
# schedule, a key made of a whole file) must not flood the terminal or the log.
SHOWN_MAX = 80


def shown(value: object) -> str:
    """repr(value) for a message, cut when long: `'[[[[[[...' (2.1 MB)`."""
    if isinstance(value, str) and len(value) > SHOWN_MAX:
        head = repr(value[: SHOWN_MAX // 2])
        return f"{head[:-1]}...{head[-1]} ({size_text(len(value.encode('utf-8', 'replace')))})"
    text = repr(value)
    if len(text) <= SHOWN_MAX:
        return text
    return f"{text[: SHOWN_MAX // 2]}... ({size_text(len(text))})"


def size_text(count: int) -> str:
    """A byte count as people read it: 812 bytes, 52.3 kB, 2.1 MB."""
    if count >= 1_000_000:
        return f"{count / 1_000_000:.1f} MB"
    if count >= 1_000:
        return f"{count / 1_000:.1f} kB"
    return f"{count} bytes"
