"""gc beside a live server (ops/gc_live.py): the guard spares what the server touched since
the mark, the blob phase re-plans for what others wrote, deletions keep gc's order, and the
exclusive lock is held only while deleting."""

from __future__ import annotations

import hashlib
from pathlib import Path

from regtool.layout.store import Store, open_storage
from regtool.layout.v2 import paths
from regtool.ops.gc import GcEntry, GcOptions, phase
from regtool.ops.gc_live import collect_live
from regtool.server.activity import Activity
from tests.support.ocitar import oci_image

LAYER = b"a layer nothing references any more"
LAYER_DIGEST = "sha256:" + hashlib.sha256(LAYER).hexdigest()
NOW = GcOptions(grace=0)


def orphan(root: Path) -> Store:
    """The fixture tree plus a blob linked in `app` that no manifest names."""
    store = open_storage(root, writable=True)
    assert store.writer is not None
    store.writer.put_blob("app", LAYER)
    return store


def blob_there(root: Path) -> bool:
    return (root / paths.blob_data(LAYER_DIGEST)).exists()


class Recorder:
    """A guard that protects nothing, records what it was asked, and can act first."""

    def __init__(self, act=None) -> None:
        self.asked: list[GcEntry] = []
        self.act = act

    def protects(self, entry: GcEntry) -> bool:
        if self.act is not None and not self.asked:
            self.act()
        self.asked.append(entry)
        return False


def test_a_live_run_deletes_garbage_in_gc_order_asking_the_guard_each_time(v2_root: Path) -> None:
    store = orphan(v2_root)
    guard = Recorder()
    outcome = collect_live(store, NOW, guard)
    assert not blob_there(v2_root)
    kinds = [e.kind for e in outcome.deleted]
    assert "blob" in kinds and "link" in kinds
    assert [phase(e) for e in guard.asked] == sorted(phase(e) for e in guard.asked)
    assert outcome.freed >= len(LAYER) and outcome.spared == 0


def test_a_blob_the_server_touched_since_the_mark_is_spared_with_its_link(v2_root: Path) -> None:
    store = orphan(v2_root)
    activity = Activity()
    began = activity.clock()
    activity.touch("app", [LAYER_DIGEST])  # a manifest PUT naming it, after the mark began
    outcome = collect_live(store, NOW, activity.guard(began))
    assert blob_there(v2_root)
    assert (v2_root / paths.layer_link("app", LAYER_DIGEST)).exists()
    # the link, the blob, and `app` itself (a repository this server wrote to)
    assert sorted(e.kind for e in outcome.result.skipped) == ["blob", "link", "repository"]
    assert all(LAYER_DIGEST[7:] not in e.path for e in outcome.deleted)


def test_a_touch_older_than_the_window_protects_nothing(v2_root: Path) -> None:
    store = orphan(v2_root)
    activity = Activity(clock=lambda: 1000.0)
    activity.touch("app", [LAYER_DIGEST])
    collect_live(store, NOW, activity.guard(1000.5))
    assert not blob_there(v2_root)


def test_a_manifest_another_instance_writes_mid_run_keeps_its_blob(v2_root: Path) -> None:
    """Written while the front phase deletes (no touch in this server): the re-plan before
    the blob phase sees the new manifest, and the blob stays."""
    store = orphan(v2_root)
    config, manifest = oci_image([LAYER])

    def other_instance() -> None:
        writer = open_storage(v2_root, writable=True).writer
        assert writer is not None
        writer.put_blob("app", config)
        writer.put_manifest("app", manifest, "v1")

    outcome = collect_live(store, NOW, Recorder(other_instance))
    assert blob_there(v2_root)
    assert any(e.kind == "blob" and e.id == LAYER_DIGEST for e in outcome.result.skipped)


def test_an_upload_another_instance_opens_in_an_emptied_repository_keeps_it(
    v2_root: Path,
) -> None:
    """A folder left with only an empty `_uploads` is planned as an emptied repository; a
    first push another instance starts there before the deletion keeps it, upload and all."""
    (v2_root / paths.uploads_dir("newapp")).mkdir(parents=True)
    store = open_storage(v2_root, writable=True)
    session = v2_root / paths.upload_dir("newapp", "0a1b2c3d-0000-4000-8000-000000000002")

    def other_instance() -> None:
        session.mkdir()
        (session / "data").write_bytes(b"the first bytes of a push")

    outcome = collect_live(store, NOW, Recorder(other_instance))
    assert (session / "data").read_bytes() == b"the first bytes of a push"
    assert [e.id for e in outcome.result.skipped if e.kind == "repository"] == ["newapp"]


def test_writers_are_not_held_while_a_live_run_plans(v2_root: Path, monkeypatch) -> None:
    """The mark runs without the lock: a writer takes it shared while gc plans."""
    store = orphan(v2_root)
    import regtool.ops.gc_live as live

    real_plan = live.plan_gc
    taken: list[bool] = []

    def plan_while_writing(*args, **kwargs):
        with store.lock(exclusive=False, timeout=0):
            taken.append(True)
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(live, "plan_gc", plan_while_writing)
    collect_live(store, NOW, Recorder())
    assert taken == [True, True]  # the mark and the re-plan before the blob phase
    assert not blob_there(v2_root)


def test_a_live_run_and_upload_purging_on_a_bucket(v2_root: Path, rgw, tmp_path: Path) -> None:
    """The server's store reads the bucket directly (bulk=False): each plan is a fresh
    listing; purging finds a session of a folder holding only `_uploads`."""
    from regtool.ops.purge import purge_uploads
    from tests.support.rgw import bucket_copy

    orphan(v2_root)
    session = v2_root / paths.upload_dir("regtool-import", "0b0e6a4c-1f3c-4f0e-9a51-0c7d5f6e2a11")
    session.mkdir(parents=True)
    (session / "startedat").write_text("2020-01-01T00:00:00Z")
    (session / "data").write_bytes(b"half an import")
    config = bucket_copy(rgw, v2_root, tmp_path)
    store = open_storage(None, config, writable=True, bulk=False)
    activity = Activity()
    kept = collect_live(store, NOW, activity.guard(0.0))  # nothing touched
    assert kept.deleted  # untouched garbage goes
    assert not store.driver.exists(paths.blob_data(LAYER_DIGEST))
    purged = purge_uploads(store, 3600.0)
    assert [(s.repo, s.upload_id) for s in purged.purged] == [
        ("regtool-import", "0b0e6a4c-1f3c-4f0e-9a51-0c7d5f6e2a11")
    ]
    assert not store.driver.exists(
        paths.upload_startedat("regtool-import", "0b0e6a4c-1f3c-4f0e-9a51-0c7d5f6e2a11")
    )
