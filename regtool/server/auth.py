"""HTTP Basic authentication against an htpasswd file of bcrypt entries.

The file format is the one distribution's `auth.htpasswd` reads: one `user:hash` per line,
surrounding blanks ignored, lines starting with `#` are comments, hashes are bcrypt
(`$2a$`, `$2b$` or `$2y$`, the same algorithm). bcrypt comes from the `bcrypt` package:
password hashing is not something to write by hand.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from regtool.errors import OperationalError, UsageError
from regtool.server.files import write_atomic

BCRYPT_COST = 10  # what `htpasswd -B` uses by default
BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
MAX_PASSWORD_BYTES = 72  # bcrypt reads no further; longer passwords are refused, not cut
_CACHE_SIZE = 256

# Checked when the user is unknown, so that a wrong name costs as much as a wrong password
# (a cost-10 hash of a throwaway string; a literal, so importing this module stays cheap).
_DUMMY_HASH = b"$2b$10$ymN/dVaZLKXcVIXJT33V9.QH/DYmEbGKWwrVQ2paLayhku.mk4DGi"


# Failed logins: after FREE_FAILURES failures in a row from one address, each further
# failure is answered after a delay that starts at FIRST_DELAY and doubles up to MAX_DELAY.
FREE_FAILURES = 5
FIRST_DELAY = 0.1
MAX_DELAY = 2.0
FORGET_AFTER = 900.0  # an address with no failure for this long starts afresh
MAX_TRACKED = 4096  # addresses remembered at most (the oldest are forgotten first)


# why a login failed, as the access log says it (never the client: all get the same 401)
NO_CREDENTIALS = "no credentials"
MALFORMED = "malformed header"
UNKNOWN_USER = "unknown user"
WRONG_PASSWORD = "wrong password"
NO_HTPASSWD = "htpasswd file unreadable"


@dataclass(frozen=True, slots=True)
class LoginFailure:
    reason: str  # one of the five above
    user: str | None = None  # the name tried (unknown user, wrong password)


class HtpasswdError(OperationalError):
    """The htpasswd file cannot be read."""


@dataclass(frozen=True, slots=True)
class _Snapshot:
    stamp: tuple[int, int, int]  # (inode, size, mtime_ns): a change means re-read
    entries: dict[str, bytes]
    skipped: tuple[int, ...]  # line numbers that are not `user:bcrypt-hash`


def parse_htpasswd(text: str) -> tuple[dict[str, bytes], tuple[int, ...]]:
    """Entries by user and the malformed line numbers; as in distribution, a later line
    for the same user wins. Distribution refuses a file with a line lacking ':'; here such
    lines are skipped (and reported through `Htpasswd.skipped_lines`)."""
    entries: dict[str, bytes] = {}
    skipped: list[int] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user or not hashed.startswith(BCRYPT_PREFIXES):
            skipped.append(number)
            continue
        entries[user] = hashed.encode("ascii", "replace")
    return entries, tuple(skipped)


def _read(path: Path) -> _Snapshot:
    try:
        with path.open("rb") as handle:
            info = os.fstat(handle.fileno())
            data = handle.read()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise HtpasswdError(
            f"cannot read htpasswd file {path}: {reason}",
            hint="create it with: regtool htpasswd FILE USER",
        ) from None
    entries, skipped = parse_htpasswd(data.decode("utf-8", "replace"))
    return _Snapshot((info.st_ino, info.st_size, info.st_mtime_ns), entries, skipped)


class Htpasswd:
    """Checks `Authorization` headers; re-reads the file whenever it changes on disk.

    A missing or unreadable file raises HtpasswdError here, at construction. If the file
    disappears or turns unreadable later, every request is refused until it is back.
    """

    def __init__(self, path: Path, realm: str = "regtool") -> None:
        self.path = Path(path)
        self.realm = realm
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = _read(self.path)
        # Keyed digests of headers that passed bcrypt, so each request does not pay for it
        # again; the random key makes the set useless to anyone reading memory or timing.
        self._key = secrets.token_bytes(32)
        self._verified: dict[bytes, None] = {}

    @property
    def users(self) -> tuple[str, ...]:
        snapshot = self._current()
        return tuple(sorted(snapshot.entries)) if snapshot else ()

    @property
    def skipped_lines(self) -> tuple[int, ...]:
        """Line numbers ignored because they are not `user:bcrypt-hash` entries."""
        snapshot = self._current()
        return snapshot.skipped if snapshot else ()

    def challenge(self) -> str:
        """The `WWW-Authenticate` value to send with a 401."""
        realm = self.realm.replace("\\", "\\\\").replace('"', '\\"')
        return f'Basic realm="{realm}"'

    def check(self, authorization_header: str | None) -> bool:
        """True when the header carries Basic credentials that match an entry."""
        return self.verdict(authorization_header) is None

    def verdict(self, authorization_header: str | None) -> LoginFailure | None:
        """None when the header's Basic credentials match an entry, else why not (for the
        access log only: every refusal gets the same answer)."""
        if not authorization_header:
            return LoginFailure(NO_CREDENTIALS)
        snapshot = self._current()
        if snapshot is None:
            return LoginFailure(NO_HTPASSWD)
        credentials = _basic_credentials(authorization_header)
        if credentials is None:
            return LoginFailure(MALFORMED)
        user, password = credentials
        raw = authorization_header.encode("utf-8", "surrogatepass")
        token = hmac.new(self._key, raw, hashlib.sha256).digest()
        if token in self._verified:
            return None
        hashed = snapshot.entries.get(user)
        ok = _bcrypt_matches(password, hashed if hashed is not None else _DUMMY_HASH)
        if hashed is None:
            return LoginFailure(UNKNOWN_USER, user)
        if not ok:
            return LoginFailure(WRONG_PASSWORD, user)
        with self._lock:
            if self._snapshot is snapshot:
                if len(self._verified) >= _CACHE_SIZE:
                    self._verified.pop(next(iter(self._verified)))
                self._verified[token] = None
        return None

    def _current(self) -> _Snapshot | None:
        try:
            info = self.path.stat()
        except OSError:
            with self._lock:
                self._snapshot = None
                self._verified.clear()
            return None
        stamp = (info.st_ino, info.st_size, info.st_mtime_ns)
        snapshot = self._snapshot
        if snapshot is not None and snapshot.stamp == stamp:
            return snapshot
        with self._lock:
            if self._snapshot is None or self._snapshot.stamp != stamp:
                try:
                    self._snapshot = _read(self.path)
                except HtpasswdError:
                    self._snapshot = None
                self._verified.clear()
            return self._snapshot


def _basic_credentials(header: str) -> tuple[str, bytes] | None:
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


def _bcrypt_matches(password: bytes, hashed: bytes) -> bool:
    if len(password) > MAX_PASSWORD_BYTES:
        return False
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # a hash that is not valid bcrypt
        return False


def check_user_name(user: str) -> None:
    """Raise UsageError unless `user` can be written as an htpasswd entry."""
    if not user or user != user.strip():
        raise UsageError(f"invalid user name {user!r}: empty or with surrounding blanks")
    if user.startswith("#"):
        raise UsageError(f"invalid user name {user!r}: a leading '#' would make a comment")
    if ":" in user or any(ord(char) < 32 or ord(char) == 127 for char in user):
        raise UsageError(f"invalid user name {user!r}: no ':' or control characters allowed")


def hash_password(password: str) -> str:
    """A bcrypt hash of `password` at cost 10, as an htpasswd field."""
    data = password.encode("utf-8")
    if not data:
        raise UsageError("empty password")
    if len(data) > MAX_PASSWORD_BYTES:
        raise UsageError(
            f"password too long: {len(data)} bytes, bcrypt reads at most {MAX_PASSWORD_BYTES}"
        )
    return bcrypt.hashpw(data, bcrypt.gensalt(BCRYPT_COST)).decode("ascii")


def set_password(path: Path, user: str, password: str) -> bool:
    """Add `user` to the htpasswd file or change its password; True when added.

    Other lines (comments, other users) are kept as they are. The file is created if
    missing (mode 0600) and always replaced atomically (temp file + rename).
    """
    check_user_name(user)
    entry = f"{user}:{hash_password(password)}"
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        lines, mode = [], 0o600
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise HtpasswdError(f"cannot read htpasswd file {path}: {reason}") from None
    kept: list[str] = []
    added = True
    for line in lines:
        name, sep, _hash = line.strip().partition(":")
        if sep and name == user and not name.startswith("#"):
            if added:
                kept.append(entry)
                added = False
            continue  # drop duplicates of this user
        kept.append(line)
    if added:
        kept.append(entry)
    try:
        write_atomic(path, ("\n".join(kept) + "\n").encode("utf-8"), mode)
    except OSError as exc:
        raise HtpasswdError(f"cannot write htpasswd file {path}: {exc.strerror}") from None
    return added


class LoginThrottle:
    """Slows down repeated failed logins from one client address.

    `failed(address)` counts a failure and returns the delay to wait before answering it;
    the caller sleeps in its own thread, so other clients are never slowed and no lock is
    held while waiting. `succeeded(address)` forgets the address. Cheap when nothing failed.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, tuple[int, float]] = {}  # address -> (count, last failure)

    def failed(self, address: str) -> float:
        now = self._clock()
        with self._lock:
            count, last = self._failures.pop(address, (0, now))
            count = 1 if now - last > FORGET_AFTER else count + 1
            self._failures[address] = (count, now)  # re-inserted: the dict stays oldest first
            if len(self._failures) > MAX_TRACKED:
                self._failures.pop(next(iter(self._failures)))
        return delay_after(count)

    def succeeded(self, address: str) -> None:
        if address in self._failures:  # the common case reads the dict only
            with self._lock:
                self._failures.pop(address, None)

    def failures(self, address: str) -> int:
        return self._failures.get(address, (0, 0.0))[0]


def delay_after(failures: int) -> float:
    """Seconds to hold the answer to the `failures`-th failure in a row."""
    if failures <= FREE_FAILURES:
        return 0.0
    return min(MAX_DELAY, FIRST_DELAY * 2 ** min(failures - FREE_FAILURES - 1, 32))
