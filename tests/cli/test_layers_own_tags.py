"""`layers REPO:TAG` and `layers REPO@DIGEST` of one image agree: its own tags are never
"other images sharing the layer" (real processes)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from regtool.layout.v2 import paths as v2paths
from tests.support.process import run_cli


def regtool(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, columns=250)


def _alias(root: Path, repository: str, tag: str, alias: str) -> str:
    """Tag `repository:alias` at the image `repository:tag` names; its digest."""
    source = root / v2paths.tag_dir(repository, tag)
    shutil.copytree(source, root / v2paths.tag_dir(repository, alias))
    return (root / v2paths.tag_current_link(repository, tag)).read_text().strip()


def _shared(stdout: str) -> list[str]:
    """The SHARED WITH cell of every layer row."""
    lines = stdout.splitlines()
    start = lines[1].index("SHARED WITH")
    return [line[start:].strip() for line in lines[3:-1]]


def test_layers_by_tag_and_by_digest_list_the_same_sharers_and_never_the_own_tags(v2_root):
    digest = _alias(v2_root, "centos", "httpd", "stable")
    root = ("--root", str(v2_root))
    by_tag = regtool("layers", "centos:httpd", *root)
    by_digest = regtool("layers", f"centos@{digest}", *root)
    assert by_tag.returncode == by_digest.returncode == 0, by_tag.stderr + by_digest.stderr
    assert _shared(by_tag.stdout) == _shared(by_digest.stdout)
    labels = {label for cell in _shared(by_digest.stdout) for label in cell.split(", ")}
    assert not {"centos:httpd", "centos:stable"} & labels
    assert {"centos:6.7", "gjkdhr/centos:httpd"} <= labels  # other images do share
    assert by_tag.stdout.splitlines()[0] == f"centos:httpd  {digest}  also tagged stable"
    assert by_digest.stdout.splitlines()[0] == f"centos@{digest}  tagged httpd, stable"


def test_layers_json_names_the_own_tags_apart_from_the_sharers(v2_root):
    digest = _alias(v2_root, "centos", "httpd", "stable")
    done = regtool("layers", f"centos@{digest}", "--root", str(v2_root), "-f", "json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["tags"] == ["httpd", "stable"]
    for layer in doc["layers"]:
        assert not {"centos:httpd", "centos:stable"} & set(layer["shared_with"])


def test_layers_of_an_untagged_manifest_says_untagged(v2_root):
    digest = _alias(v2_root, "centos", "httpd", "stable")
    for tag in ("httpd", "stable"):
        shutil.rmtree(v2_root / v2paths.tag_dir("centos", tag))
    done = regtool("layers", f"centos@{digest}", "--root", str(v2_root))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"centos@{digest}  untagged"
