"""`ls` sizes checked against the reference registry's own HTTP API and the v1 ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regtool.layout.detect import open_reader
from regtool.layout.v2 import paths
from regtool.ops.ls import list_repositories, list_tags
from tests.conftest import V2_FIXTURE, copy_tree, snapshot
from tests.support.ocitar import index_of_indexes
from tests.support.refregistry import ALL_MANIFEST_TYPES, http_request, reference_registry
from tests.support.v2tree import put_blob, put_link

ACCEPT = ", ".join(ALL_MANIFEST_TYPES)
EXPECTED = json.loads((V2_FIXTURE / "EXPECTED.json").read_text())


def in_bucket(root: Path, rgw: object, folder: Path) -> object:
    """A reader over a copy of the v2 tree `root` in an S3 bucket."""
    from regtool.layout.store import open_storage
    from tests.support.rgw import bucket_copy

    return open_storage(config=bucket_copy(rgw, root, folder)).reader


def checked_in_bucket(listing, rgw, folder):
    """`listing` of a v2 tree's reader, checked equal on a copy of the tree in a bucket."""

    def rows(root: Path) -> tuple:
        found = listing(open_reader(root))
        assert listing(in_bucket(root, rgw, folder)) == found
        return found

    return rows


@pytest.fixture
def tags_of(rgw, tmp_path):
    return checked_in_bucket(list_tags, rgw, tmp_path)


@pytest.fixture
def repos_of(rgw, tmp_path):
    return checked_in_bucket(list_repositories, rgw, tmp_path)


def _get(url: str, accept: str = ACCEPT) -> tuple[dict, str]:
    status, body, headers = http_request("GET", url, headers={"Accept": accept})
    assert status == 200, url
    return json.loads(body), headers["Docker-Content-Digest"]


def _blob_size(base: str, repo: str, digest: str) -> int:
    status, _, headers = http_request("HEAD", f"{base}/v2/{repo}/blobs/{digest}")
    assert status == 200
    return int(headers["Content-Length"])


@pytest.fixture(scope="module")
def reference_view(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """For every tag: the manifest digest and the blob sizes, as the registry reports them."""
    root = copy_tree(V2_FIXTURE, tmp_path_factory.mktemp("ref") / "root")
    view: dict[str, dict] = {}
    with reference_registry(root, readonly=True) as reg:
        catalog, _ = _get(f"{reg.url}/v2/_catalog", "application/json")
        for repo in catalog["repositories"]:
            tags, _ = _get(f"{reg.url}/v2/{repo}/tags/list", "application/json")
            for tag in tags["tags"]:
                manifest, digest = _get(f"{reg.url}/v2/{repo}/manifests/{tag}")
                children = [manifest]
                platforms = []
                if "manifests" in manifest:
                    children = []
                    for child in manifest["manifests"]:
                        body, _ = _get(f"{reg.url}/v2/{repo}/manifests/{child['digest']}")
                        children.append(body)
                        p = child["platform"]
                        platforms.append(
                            "/".join(filter(None, [p["os"], p["architecture"], p.get("variant")]))
                        )
                blobs = {}
                for body in children:
                    for desc in [body["config"], *body["layers"]]:
                        blobs[desc["digest"]] = _blob_size(reg.url, repo, desc["digest"])
                view[f"{repo}:{tag}"] = {"digest": digest, "blobs": blobs, "platforms": platforms}
        # untagged manifests a plain gc keeps (an artifact of a tagged image goes with it)
        held: set[str] = set()
        for repo, manifests in EXPECTED["untagged"].items():
            for entry in manifests:
                if entry["digest"] == EXPECTED["artifact"]["digest"]:
                    continue
                body, _ = _get(f"{reg.url}/v2/{repo}/manifests/{entry['digest']}")
                held |= {desc["digest"] for desc in [body["config"], *body["layers"]]}
        view["@held"] = {"blobs": dict.fromkeys(held, 0)}
    return view


def test_ls_v2_rows_match_the_reference_registry(v2_root, reference_view, tags_of):
    """EXCLUSIVE: the blobs no other tag and no untagged manifest (which a plain gc keeps)
    needs, i.e. what removing only that tag frees."""
    rows = {f"{r.repository}:{r.tag}": r for r in tags_of(v2_root)}
    assert set(rows) == set(reference_view) - {"@held"}
    for label, ref in reference_view.items():
        if label == "@held":
            continue
        row = rows[label]
        assert row.digest == ref["digest"], label
        assert row.size == sum(ref["blobs"].values()), label
        assert list(row.platforms) == ref["platforms"], label
        others = set().union(*(v["blobs"] for k, v in reference_view.items() if k != label))
        assert row.exclusive == sum(s for d, s in ref["blobs"].items() if d not in others), label
        assert row.warnings == ()


def test_ls_v2_an_untagged_manifest_keeps_shared_blobs_out_of_exclusive(
    v2_root, reference_view, tags_of
):
    rows = {f"{r.repository}:{r.tag}": r for r in tags_of(v2_root)}
    # busybox keeps an untagged earlier revision sharing the layer: a plain gc keeps that
    # layer after `rm busybox:latest`, so it is not exclusive; its own blobs are in no row
    busybox = reference_view["busybox:latest"]["blobs"]
    held = reference_view["@held"]["blobs"]
    assert set(busybox) & set(held)
    assert rows["busybox:latest"].exclusive == sum(s for d, s in busybox.items() if d not in held)
    assert rows["busybox:latest"].size == sum(busybox.values())
    # an artifact of sshd:latest (an SBOM) goes with its subject: it holds nothing back
    sshd = reference_view["sshd:latest"]["blobs"]
    others = set().union(*(v["blobs"] for k, v in reference_view.items() if k != "sshd:latest"))
    assert rows["sshd:latest"].exclusive == sum(s for d, s in sshd.items() if d not in others)


def test_ls_v1_sizes_are_the_layer_files_of_the_ancestry(v1_root, v1_expected):
    rows = {(r.repository, r.tag): r for r in list_tags(open_reader(v1_root))}
    assert len(rows) == len(v1_expected["tags"])
    ancestries = {(t["repository"], t["tag"]): set(t["ancestry"]) for t in v1_expected["tags"]}
    for tag in v1_expected["tags"]:
        key = (tag["repository"], tag["tag"])
        row = rows[key]
        assert row.digest == tag["image"]
        assert row.size == tag["layer_bytes"]
        assert row.layers == len(tag["ancestry"])
        others = set().union(*(a for k, a in ancestries.items() if k != key))
        mine = ancestries[key] - others
        size = sum((v1_root / "images" / i / "layer").stat().st_size for i in mine)
        assert row.exclusive == size, key


def test_ls_rows_are_sorted_and_pattern_accepts_short_library_names(v1_root):
    reader = open_reader(v1_root)
    rows = list_tags(reader)
    assert [(r.repository, r.tag) for r in rows] == sorted((r.repository, r.tag) for r in rows)
    assert {r.repository for r in list_tags(reader, "centos*")} == {
        "library/centos",
        "library/centos6",
    }
    assert {r.repository for r in list_tags(reader, "library/sshd")} == {"library/sshd"}
    assert {r.repository for r in list_tags(reader, "*/centos")} == {
        "library/centos",
        "gjkdhr/centos",
    }


def test_ls_repos_counts_exclusive_against_other_repositories(v1_root):
    rows = {r.repository: r for r in list_repositories(open_reader(v1_root))}
    centos = rows["library/centos"]
    assert centos.tags == 2
    # centos:6.7's chain is shared with centos6, sshd and gjkdhr: only httpd's 2 images are
    # exclusive to the repository
    assert centos.shared == rows["library/centos6"].shared
    assert centos.size == centos.exclusive + centos.shared
    assert rows["library/busybox"].shared == 0


def test_ls_repos_shows_empty_repositories_with_zero_tags(v2_root):
    (v2_root / paths.layers_dir("empty")).mkdir(parents=True)
    rows = {r.repository: r for r in list_repositories(open_reader(v2_root))}
    assert rows["empty"].tags == 0 and rows["empty"].size == 0


def test_ls_never_writes_to_the_root(v1_root, v2_root):
    for root in (v1_root, v2_root):
        before = snapshot(root)
        list_tags(open_reader(root))
        list_repositories(open_reader(root))
        assert snapshot(root) == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"sha256:" + b"a" * 64 + b"\n", "white space"),
        (b"", "empty digest"),
        (b"sha256:" + b"A" * 64, "upper-case"),
    ],
)
def test_ls_marks_a_tag_with_a_malformed_link(v2_root, content, message, tags_of):
    (v2_root / paths.tag_current_link("centos", "6.7")).write_bytes(content)
    rows = {(r.repository, r.tag): r for r in tags_of(v2_root)}
    bad = rows[("centos", "6.7")]
    assert bad.digest is None and bad.size == 0
    assert len(bad.warnings) == 1 and message in bad.warnings[0]
    assert paths.tag_current_link("centos", "6.7") in bad.warnings[0]
    assert rows[("centos", "httpd")].warnings == ()


def test_ls_marks_a_dangling_tag(v2_root, tags_of):
    missing = "sha256:" + "f" * 64
    (v2_root / paths.tag_current_link("sshd", "latest")).write_bytes(missing.encode())
    row = next(r for r in tags_of(v2_root) if r.repository == "sshd")
    assert row.digest == missing and row.size == 0
    assert "missing" in row.warnings[0] and paths.blob_data(missing) in row.warnings[0]


def test_ls_reports_an_unreadable_manifest_instead_of_failing(v2_root, v2_expected):
    digest = v2_expected["manifests"]["centos6:latest"]["digest"]
    data = v2_root / paths.blob_data(digest)
    data.unlink()
    data.mkdir()  # unreadable: a folder where the file should be
    row = next(r for r in list_tags(open_reader(v2_root)) if r.repository == "centos6")
    assert "unreadable manifest" in row.warnings[0]


def test_ls_warns_about_a_repository_without_layers_folder(v2_root, repos_of):
    import shutil

    shutil.rmtree(v2_root / paths.layers_dir("sshd"))
    rows = {r.repository: r for r in repos_of(v2_root)}
    assert "no _layers folder" in rows["sshd"].warnings[0]
    assert rows["sshd"].tags == 1


def test_ls_accepts_the_docker_registry_v2_folder_as_root(v2_root):
    inner = v2_root / Path(paths.V2)
    assert [r.tag for r in list_tags(open_reader(inner))] == [
        r.tag for r in list_tags(open_reader(v2_root))
    ]


def test_two_tags_on_one_manifest_leave_neither_exclusive_bytes(v2_root, v2_expected, tags_of):
    from regtool.layout.v2.writer import V2Writer
    from regtool.storage.filesystem import FilesystemDriver

    digest = v2_expected["manifests"]["centos:httpd"]["digest"]
    V2Writer(FilesystemDriver(v2_root)).tag("centos", "alias", digest)
    rows = {(r.repository, r.tag): r for r in tags_of(v2_root)}
    assert rows[("centos", "alias")].size == rows[("centos", "httpd")].size > 0
    assert rows[("centos", "alias")].exclusive == rows[("centos", "httpd")].exclusive == 0
    # the base layers now have one more user, nothing else changes for centos:6.7
    assert rows[("centos", "6.7")].exclusive > 0


def test_an_index_of_indexes_counts_every_image_below_it(v2_root, v2_expected, tags_of):
    """As gc marks through nested indexes to any depth, ls counts what they hold."""
    multi = v2_expected["manifests"]["multi:latest"]
    digest = put_blob(v2_root, index_of_indexes(multi["digest"], multi["size"]))
    for link in (paths.revision_link("multi", digest), paths.tag_current_link("multi", "nested")):
        put_link(v2_root, link, digest)
    rows = {(r.repository, r.tag): r for r in tags_of(v2_root)}
    nested, plain = rows[("multi", "nested")], rows[("multi", "latest")]
    assert nested.warnings == () and nested.platforms == plain.platforms
    assert nested.size == plain.size > 0


def test_a_chain_of_thousands_of_nested_indexes_is_read_without_recursion(v2_root, v2_expected):
    multi = v2_expected["manifests"]["multi:latest"]
    digest, size = multi["digest"], multi["size"]
    for _ in range(3000):  # deeper than Python's recursion limit
        top = index_of_indexes(digest, size)
        digest, size = put_blob(v2_root, top), len(top)
    put_link(v2_root, paths.tag_current_link("multi", "deep"), digest)
    rows = {(r.repository, r.tag): r for r in list_tags(open_reader(v2_root))}
    assert rows[("multi", "deep")].size == rows[("multi", "latest")].size > 0


def _blob_users(reader, pattern=None, by_repository=False):
    """Brute force: every blob any listed tag needs, its size and who needs it."""
    from regtool.ops.inventory import matches

    sizes: dict[str, int] = {}
    users: dict[str, set[str]] = {}
    for repo in reader.repositories():
        for link in reader.tags(repo.name):
            if link.digest is None:
                continue
            owner = repo.name if by_repository else f"{repo.name}:{link.tag}"
            for blob, size in reader.resolve(repo.name, link.digest).blobs().items():
                users.setdefault(blob, set()).add(owner)
                if matches(repo.name, pattern):
                    sizes[blob] = size
        if reader.layout == "v1":
            continue  # v1 gc frees every image no tag reaches: nothing untagged stays
        # an untagged manifest (no tag's, no tagged index's child, no artifact of a tagged
        # image) is kept by a plain gc: what it holds is nobody's alone
        tagged = {link.digest for link in reader.tags(repo.name)} - {None}
        for digest in set(tagged):
            manifest = reader.manifest(digest)
            tagged |= {d.digest for d in getattr(manifest, "manifests", ())}
        for _, digest, _ in reader.revisions(repo.name):
            subject = getattr(reader.manifest(digest), "subject", None)
            if digest in tagged or (subject is not None and subject.digest in tagged):
                continue
            owner = repo.name if by_repository else f"{repo.name}@{digest}"
            for blob in reader.resolve(repo.name, digest).blobs():
                users.setdefault(blob, set()).add(owner)
    return sizes, users


@pytest.mark.parametrize("pattern", [None, "centos*"])
@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_ls_totals_count_each_blob_once_and_split_shared_from_exclusive(
    v1_root, v2_root, layout, pattern
):
    from regtool.ops.ls import list_repositories_with_totals, list_tags_with_totals

    reader = open_reader(v1_root if layout == "v1" else v2_root)
    for by_repository, listing in (
        (False, list_tags_with_totals),
        (True, list_repositories_with_totals),
    ):
        _, totals = listing(reader, pattern)
        sizes, users = _blob_users(reader, pattern, by_repository)
        alone = sum(size for blob, size in sizes.items() if len(users[blob]) == 1)
        assert (totals.blobs, totals.size, totals.exclusive) == (
            len(sizes),
            sum(sizes.values()),
            alone,
        )
        assert 0 < totals.shared < totals.size
