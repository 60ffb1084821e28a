"""The error hierarchy shared by brr-release and the daemon.

Every error carries the exit code the command line turns it into, and a message that
fits on one line: an operator reads it at 3 a.m. and must know what went wrong without
a traceback.

An OSError (a full disk, a file size limit, a quota) is not a bug but the machine's
state: where its meaning is known, `os_errors_leave` turns it into OperationFailed that
names the file, the reason and what the failure left behind. Any other exception is a
bug, and its traceback is what finds it.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

# the errors a writer gets when space (or its share of it) runs out: EFBIG is what
# RLIMIT_FSIZE gives, EDQUOT a quota; each is over once space is freed
NO_SPACE = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


class BrrError(Exception):
    """An expected failure with a one-line message and an exit code."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class OperationFailed(BrrError):
    """The operation was valid but could not be carried out (exit 1)."""

    exit_code = 1


class BadInput(BrrError):
    """Bad usage or bad input: a malformed file, an unknown ID, a missing path (exit 2)."""

    exit_code = 2


class ValidationError(BadInput):
    """A declaration or manifest that does not parse: names the file, the field, the problem."""

    def __init__(self, source: str, field: str, problem: str) -> None:
        where = f"{source}: {field}: " if field else f"{source}: "
        super().__init__(where + problem)
        self.source = source
        self.field = field
        self.problem = problem


class ConfigMissing(BrrError):
    """The daemon has no release it can run (EX_CONFIG)."""

    exit_code = 78


def describe_os_error(exc: OSError) -> str:
    """An OSError as `cannot write PATH: No space left on device`: the file and the reason.

    Errors of space name their file as written (it is always a write that runs out);
    others name the file(s) the call was given, or nothing when it had none.
    """
    reason = exc.strerror or str(exc)
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    if exc.errno in NO_SPACE and names:
        return f"cannot write {names[-1]}: {reason}"
    if len(names) == 2:
        return f"{names[0]} -> {names[1]}: {reason}"
    return f"{names[0]}: {reason}" if names else reason


def os_failure(exc: OSError, outcome: str) -> OperationFailed:
    """OperationFailed for an OSError, with what it means (outcome) and, when space ran
    out, what to do. outcome says what was (not) changed, e.g. "nothing was changed"."""
    hint = "; free space and run it again" if exc.errno in NO_SPACE else ""
    return OperationFailed(f"{describe_os_error(exc)} ({outcome}{hint})")


@contextmanager
def os_errors_leave(outcome: str) -> Iterator[None]:
    """Turn an OSError of the block into os_failure(exc, outcome)."""
    try:
        yield
    except OSError as exc:
        raise os_failure(exc, outcome) from None
