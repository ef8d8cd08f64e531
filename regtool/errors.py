"""The regtool error tree; every layer may raise these, only the CLI maps them to exit codes.

RegtoolError                    message (one line) + optional hint
├── NoMatchError                a pattern that matches nothing          (exit 1)
├── UsageError                  the arguments do not make sense          (exit 2)
│   ├── BadReferenceError       a REF that does not parse
│   └── UnknownReferenceError   a REF that names nothing in the storage
└── OperationalError            the environment stopped us               (exit 3)
    ├── RootError               root missing or not a registry storage
    ├── UnreadableError         a file we must read cannot be read
    └── LockHeldError           another regtool holds the storage lock
"""

from __future__ import annotations


class RegtoolError(Exception):
    """Base of every error regtool raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class NoMatchError(RegtoolError):
    """A pattern (a glob over repository or tag names) that matches nothing stored:
    nothing was done."""


class UsageError(RegtoolError):
    """The command was asked something that cannot be done as asked."""


class BadReferenceError(UsageError):
    """A reference (REPO[:TAG][@DIGEST]) that does not parse."""


class UnknownReferenceError(UsageError):
    """A well-formed reference that names nothing in this storage."""


class OperationalError(RegtoolError):
    """The storage or the environment prevented the command from running."""


class RootError(OperationalError):
    """The storage root is missing or holds no registry layout we know."""


class UnreadableError(OperationalError):
    """A file that had to be read could not be read or parsed."""


class LockHeldError(OperationalError):
    """Another process holds the storage lock."""
