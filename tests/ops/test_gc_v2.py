"""What gc keeps of a repository once it is marked, and what its workers send back."""

from __future__ import annotations

import pickle
import time

from regtool.layout.detect import open_reader
from regtool.layout.v2 import paths
from regtool.ops.gc import GcEntry, GcOptions
from regtool.ops.gc_io import hex_key
from regtool.ops.gc_v2 import SweepPart, V2Collector
from tests.support.scripts import load_script


def collector(root, **options: object) -> V2Collector:
    opts: dict = {"grace": 0.0, **options}
    return V2Collector(open_reader(root), GcOptions(**opts), time.time())


def test_a_marked_repository_keeps_only_what_the_sweep_needs(tmp_path):
    synthetic = load_script("mksynthetic")
    synthetic.generate(str(tmp_path / "root"), synthetic.SMALL)
    for untagged in (False, True):
        gc = collector(tmp_path / "root", delete_untagged=untagged)
        names = [repo.name for repo in gc.reader.repositories()]
        part = gc.mark_part(names)
        assert len(part.repos) == len(names)
        for state in part.repos:
            assert state.tags == {} and state.keep == set()
            assert sorted(state.revisions) == state.dropped  # the dropped ones only
            assert state.kept_revisions + len(state.dropped) > 0
            links = state.sha256_links
            keys = [links[at : at + 32] for at in range(0, len(links), 32)]
            assert keys == sorted(keys)
            assert not any(key in part.marked for key in keys)  # only links that may dangle
            assert state.layer_links == []  # nothing but sha256 links in this tree
        assert part.marked.fan(0)  # the marks are settled before they are sent
        assert sum(len(state.sha256_links) for state in part.repos) > 0  # untagged images
        assert pickle.loads(pickle.dumps(part)).marked == part.marked


def test_sweep_results_are_packed_and_unpacked_unchanged(tmp_path):
    synthetic = load_script("mksynthetic")
    synthetic.generate(str(tmp_path / "root"), synthetic.SMALL)
    gc = collector(tmp_path / "root")
    plan = gc.plan()
    found = sorted((e for e in plan.delete if e.kind == "blob"), key=lambda e: e.path)
    odd = GcEntry("blob", "sha512:" + "ab" * 64, 7, paths.blob_dir("sha512:" + "ab" * 64))
    sweep = collector(tmp_path / "root")
    sweep.marked = gc.marked
    part = sweep.sweep_part(sweep.fans())
    assert len(part.packed) == 40 * len(found) and part.entries == []
    assert sorted(part.blob_entries(), key=lambda e: e.path) == found
    mixed = SweepPart([odd], 0, [], {}, {}, part.packed[:40])
    assert mixed.blob_entries() == [found_entry(part.packed[:40]), odd]
    assert hex_key("sha256", found[0].id[7:]) not in gc.marked


def found_entry(packed: bytes) -> GcEntry:
    digest = "sha256:" + packed[:32].hex()
    return GcEntry("blob", digest, int.from_bytes(packed[32:], "big"), paths.blob_dir(digest))
