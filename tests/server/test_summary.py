"""regtool.server.summary: the web page's storage summary, computed in the background.

It equals what the CLI's ops say, it is computed again after a committed write, and a push
is never held up by a computation in progress.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from regtool.layout.store import Store, open_storage
from regtool.ops.gc import GcOptions, plan_gc
from regtool.ops.ls import list_repositories_with_totals, list_tags_with_totals
from regtool.server.app import App, open_context
from regtool.server.handlers.context import Options
from regtool.server.stdlib import RegistryServer
from regtool.server.summary import Summaries, Summary, compute_summary
from regtool.storage.driver import StorageError
from tests.server.apicalls import DOCKER_ACCEPT, request
from tests.server.conftest import FIXTURE_V2
from tests.support.serve import Served

WAIT = 30.0  # bound on every wait for the worker (it finishes in well under a second here)


@contextmanager
def summarized_server(
    root: Path, compute: Callable[..., Summary] = compute_summary, debounce: float = 0.0
) -> Iterator[tuple[Served, Summaries]]:
    """The server on a thread of this process, with its summary worker running."""
    ctx = open_context(root, Options())
    ctx.summaries = Summaries(ctx.store, debounce=debounce, compute=compute).start()
    server = RegistryServer(("127.0.0.1", 0), App(ctx))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    host = f"127.0.0.1:{server.server_address[1]}"
    try:
        yield Served(f"http://{host}", host, root, server=server), ctx.summaries
    finally:
        ctx.summaries.stop()
        server.shutdown()
        server.server_close()


def test_summary_figures_are_those_of_ls_ls_repos_and_gc_on_the_reference_tree() -> None:
    store = open_storage(FIXTURE_V2)
    summary = compute_summary(store)
    tag_rows, tag_totals = list_tags_with_totals(store.reread())
    repo_rows, repo_totals = list_repositories_with_totals(store.reread())
    plain = plan_gc(store.reread(), GcOptions())
    assert summary.complete and summary.error is None
    assert summary.tag_rows == tag_rows and summary.repository_rows == repo_rows
    assert (summary.tags, summary.repositories) == (7, 6)
    assert (summary.blobs, summary.tagged_bytes) == (tag_totals.blobs, tag_totals.size)
    assert summary.exclusive_bytes == repo_totals.exclusive
    assert summary.shared_bytes == repo_totals.shared
    assert summary.saved_bytes == sum(r.size for r in repo_rows) - repo_totals.size > 0
    assert (summary.gc_bytes, summary.gc_entries) == (plain.bytes, len(plain.delete))
    # what gc --delete-untagged drops with its default grace (how old the checkout is decides)
    untagged = plan_gc(store.reread(), GcOptions(delete_untagged=True))
    dropped = sum(1 for entry in untagged.delete if entry.kind == "manifest")
    assert summary.untagged_manifests == dropped
    assert summary.stored_bytes == summary.tagged_bytes + (summary.untagged_bytes or 0)


def age(root: Path, seconds: float = 7200) -> None:
    """Make every file and folder older than gc's default grace (1h)."""
    stamp = time.time() - seconds
    for path in [root, *root.rglob("*")]:
        os.utime(path, (stamp, stamp), follow_symlinks=False)


def test_untagged_manifests_and_what_gc_frees_are_counted(v2_copy: Path) -> None:
    age(v2_copy)
    with summarized_server(v2_copy) as (served, summaries):
        first = summaries.wait(1, WAIT)
        assert first is not None and first.untagged_manifests is not None
        status, headers, _ = request(
            served.host, "HEAD", "/v2/centos/manifests/6.7", headers=DOCKER_ACCEPT
        )
        digest = headers["Docker-Content-Digest"]
        assert request(served.host, "DELETE", "/v2/centos/manifests/6.7")[0] == 202
        second = summaries.wait(2, WAIT)
    assert second is not None and second.tags == first.tags - 1
    store = open_storage(v2_copy)
    untagged = plan_gc(store.reread(), GcOptions(delete_untagged=True))
    dropped = [e.id for e in untagged.delete if e.kind == "manifest"]
    assert f"centos@{digest}" in dropped and second.untagged_manifests == len(dropped)
    assert len(dropped) == first.untagged_manifests + 1
    assert second.untagged_bytes == untagged.bytes > 0


def test_a_committed_push_makes_the_summary_be_computed_again(v2_copy: Path) -> None:
    with summarized_server(v2_copy) as (served, summaries):
        first = summaries.wait(1, WAIT)
        assert first is not None and first.tags == 7
        _, _, raw = request(served.host, "GET", "/v2/centos/manifests/6.7", headers=DOCKER_ACCEPT)
        headers = {"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"}
        assert request(served.host, "PUT", "/v2/centos/manifests/again", raw, headers)[0] == 201
        second = summaries.wait(2, WAIT)
    assert second is not None and second.tags == 8
    assert ("centos", "again") in {(r.repository, r.tag) for r in second.tag_rows}


def test_a_push_is_answered_at_once_while_a_long_computation_runs(v2_copy: Path) -> None:
    running = threading.Event()
    release = threading.Event()

    def slow(store: Store, partial: Callable[[Summary], None] | None) -> Summary:
        running.set()
        release.wait(WAIT)  # a computation that takes as long as the test wants
        return compute_summary(store, partial)

    with summarized_server(v2_copy, slow) as (served, summaries):
        assert running.wait(WAIT)
        _, _, raw = request(served.host, "GET", "/v2/centos/manifests/6.7", headers=DOCKER_ACCEPT)
        headers = {"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"}
        started = time.monotonic()
        status = request(served.host, "PUT", "/v2/centos/manifests/during", raw, headers)[0]
        took = time.monotonic() - started
        page = request(served.host, "GET", "/ui/api/summary")
        release.set()
        assert status == 201 and took < 0.5  # answered within 0.5 s
        assert page[0] == 200 and b'"computing"' in page[2]  # nothing computed per request
        # the push came during the first computation: a second one follows and sees it
        later = summaries.wait(2, WAIT)
    assert later is not None and ("centos", "during") in {
        (r.repository, r.tag) for r in later.tag_rows
    }


def test_a_failed_computation_keeps_the_figures_and_says_why(v2_copy: Path) -> None:
    calls = []

    def flaky(store: Store, partial: Callable[[Summary], None] | None) -> Summary:
        calls.append(1)
        if len(calls) == 2:
            raise StorageError("docker/registry/v2/repositories", "I/O error")
        return compute_summary(store, partial)

    with summarized_server(v2_copy, flaky) as (_served, summaries):
        good = summaries.wait(1, WAIT)
        summaries.changed()
        failed = summaries.wait(2, WAIT)
        summaries.changed()
        again = summaries.wait(3, WAIT)
    assert good is not None and failed is not None and again is not None
    assert failed.error is not None and "I/O error" in failed.error
    assert failed.tag_rows == good.tag_rows and failed.complete
    assert again.error is None


def test_changes_within_the_debounce_are_covered_by_one_computation(v2_copy: Path) -> None:
    ctx = open_context(v2_copy, Options())
    summaries = Summaries(ctx.store, debounce=0.3).start()
    try:
        assert summaries.wait(1, WAIT) is not None
        for _ in range(5):
            summaries.changed()
        assert summaries.wait(2, WAIT) is not None
        assert summaries.wait(3, 1.0) is not None and summaries.computations == 2
    finally:
        summaries.stop()


def test_a_slow_computation_leaves_the_server_at_least_four_fifths_of_the_time(
    v2_copy: Path,
) -> None:
    """A computation of S seconds waits S / 0.2 from its start before the next, however many
    pushes arrive: on a big tree the summary never takes more than a fifth of the time."""
    starts: list[float] = []

    def slow(store, partial=None):
        starts.append(time.monotonic())
        time.sleep(0.3)
        return compute_summary(store, partial)

    ctx = open_context(v2_copy, Options())
    summaries = Summaries(ctx.store, debounce=0.05, compute=slow).start()
    try:
        assert summaries.wait(1, WAIT) is not None
        summaries.changed()
        assert summaries.wait(2, WAIT) is not None
    finally:
        summaries.stop()
    assert len(starts) == 2 and starts[1] - starts[0] >= 0.3 / 0.2 - 0.05
