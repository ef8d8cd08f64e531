"""gc's compact mark set answers exactly like a set of digest strings."""

from __future__ import annotations

import hashlib
import pickle
import random

from regtool.ops import gc_marks
from regtool.ops.gc_io import hex_key, key
from regtool.ops.gc_marks import Marks


def digest(n: int) -> str:
    return "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()


def test_marks_agree_with_a_plain_set_of_digests(monkeypatch):
    monkeypatch.setattr(gc_marks, "PENDING_LIMIT", 4 * gc_marks.KEY)  # merges often
    rng = random.Random(7)
    marked = [digest(rng.randrange(3000)) for _ in range(5000)]  # many repeats
    marked += ["sha512:" + "ab" * 64, "sha256:" + "A" * 64, "sha256:abc"]
    marks, plain = Marks(), set()
    for name in marked:
        marks.add(name)
        plain.add(name)
    assert len(marks) == len(plain)
    for n in range(4000):
        name = digest(n)
        assert (key(name) in marks) == (name in plain)
    for odd in ("sha512:" + "ab" * 64, "sha256:" + "A" * 64, "sha256:abc"):
        assert key(odd) in marks
    assert key("sha512:" + "cd" * 64) not in marks
    for first in (0, 0x7F, 0xFF):
        expected = {key(d) for d in plain if key(d)[:1] == bytes([first])}
        assert marks.fan(first) == expected


def test_merged_marks_equal_marks_made_at_once_and_survive_pickling():
    names = [digest(n) for n in range(2000)]
    whole, left, right = Marks(), Marks(), Marks()
    for i, name in enumerate(names):
        whole.add(name)
        (left if i % 3 else right).add(name)
        if i % 5 == 0:
            right.add(name)  # in both halves
    left.update(pickle.loads(pickle.dumps(right.settle())))
    assert left == whole
    assert len(left) == 2000


def test_keys_are_32_bytes_for_canonical_sha256_only():
    hexpart = "0123456789abcdef" * 4
    assert key(f"sha256:{hexpart}") == bytes.fromhex(hexpart)
    assert hex_key("sha256", hexpart) == key(f"sha256:{hexpart}")
    for other in (f"sha256:{hexpart.upper()}", f"sha512:{hexpart * 2}", "sha256: " + hexpart[1:]):
        assert key(other) == other
        algorithm, _, rest = other.partition(":")
        assert hex_key(algorithm, rest) == other
