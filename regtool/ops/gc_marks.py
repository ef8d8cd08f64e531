"""The set of digests gc found in use, compact enough for a tree of millions of blobs.

A Python set of 71-character digest strings costs about 190 bytes an entry; `Marks` keeps a
canonical sha256 digest as its 32 bytes inside one sorted byte string per first byte (the
blob store's fan folders): 32 bytes an entry, no object per digest. Marking appends to a
per-fan buffer (repeats allowed); a buffer past a few thousand keys, and every buffer
before a lookup, is merged into its fan's sorted run. Anything that is not a canonical
sha256 digest (sha512, whatever a link held) is kept as a string in a plain set.
"""

from __future__ import annotations

from regtool.ops.gc_io import key

KEY = 32  # bytes of a sha256 digest
FANS = 256
PENDING_LIMIT = 1024 * KEY  # a fan's appended keys merged into its run past this


class Marks:
    """Digests (`gc_io.key` form) in use; add, merge, test, count, and list one fan."""

    def __init__(self) -> None:
        self.runs: list[bytes] = [b""] * FANS  # sorted, distinct keys of each first byte
        self.pending: list[bytearray] = [bytearray() for _ in range(FANS)]
        self.other: set[str] = set()  # digests that are not canonical sha256

    def add(self, digest: str) -> None:
        self.add_key(key(digest))

    def add_key(self, found: bytes | str) -> None:
        if isinstance(found, str):
            self.other.add(found)
            return
        pending = self.pending[found[0]]
        pending += found
        if len(pending) >= PENDING_LIMIT:
            self._merge(found[0])

    def update(self, marks: Marks) -> None:
        """Add everything in `marks`."""
        self.other |= marks.other
        for fan in range(FANS):
            theirs = marks.runs[fan] + marks.pending[fan]
            if theirs:
                self.pending[fan] += theirs
                self._merge(fan)

    def settle(self) -> Marks:
        """Merge every pending key (before the marks are sent to, or shared with, a
        worker process: each would merge them on its own)."""
        for fan in range(FANS):
            if self.pending[fan]:
                self._merge(fan)
        return self

    def _merge(self, fan: int) -> None:
        run, pending = self.runs[fan], bytes(self.pending[fan])
        keys = {run[i : i + KEY] for i in range(0, len(run), KEY)}
        keys.update(pending[i : i + KEY] for i in range(0, len(pending), KEY))
        self.runs[fan] = b"".join(sorted(keys))
        self.pending[fan] = bytearray()

    def __contains__(self, found: object) -> bool:
        if isinstance(found, str):
            return found in self.other
        if not isinstance(found, bytes) or len(found) != KEY:
            return False
        fan = found[0]
        if self.pending[fan]:
            self._merge(fan)
        run = self.runs[fan]
        low, high = 0, len(run) // KEY
        while low < high:  # binary search over the fan's sorted keys
            middle = (low + high) // 2
            probe = run[middle * KEY : middle * KEY + KEY]
            if probe < found:
                low = middle + 1
            elif probe > found:
                high = middle
            else:
                return True
        return False

    def fan(self, fan: int) -> set[bytes]:
        """The keys whose first byte is `fan`, as a set (for sweeping that fan folder)."""
        if self.pending[fan]:
            self._merge(fan)
        run = self.runs[fan]
        return {run[i : i + KEY] for i in range(0, len(run), KEY)}

    def __len__(self) -> int:
        self.settle()
        return sum(len(run) for run in self.runs) // KEY + len(self.other)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Marks):
            return NotImplemented
        self.settle()
        other.settle()
        return self.runs == other.runs and self.other == other.other

    __hash__ = None  # type: ignore[assignment]
