"""The error hierarchy shared by brr-release and the daemon.

Every error carries the exit code the command line turns it into, and a message that
fits on one line: an operator reads it at 3 a.m. and must know what went wrong without
a traceback.
"""

from __future__ import annotations


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
