"""The web page's routes and JSON: the same figures as `regtool ls`, `ls --repos` and
`layers --format json` on the tree the reference registry wrote; the API unchanged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from regtool.model.units import human_size
from regtool.ops.inventory import short_name
from regtool.server.app import App, open_context
from regtool.server.auth import Htpasswd, set_password
from regtool.server.handlers.context import Options
from regtool.server.http import Request
from regtool.server.routes import Match, route
from tests.server.apicalls import request
from tests.server.conftest import FIXTURE_V2, copy_fixture
from tests.server.test_summary import WAIT, summarized_server
from tests.support.serve import REPO_ROOT

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def cli_json(*args: str) -> object:
    done = subprocess.run(
        [sys.executable, "-m", "regtool", *args, "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
    )
    return json.loads(done.stdout)


def get_json(host: str, path: str) -> tuple[int, dict]:
    status, _, body = request(host, "GET", path)
    return status, json.loads(body)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    root = copy_fixture(FIXTURE_V2, tmp_path_factory.mktemp("ui") / "v2")
    with summarized_server(root) as (server, summaries):
        assert summaries.wait(1, WAIT) is not None
        yield server


def test_routes_of_the_page() -> None:
    assert route("/") == Match("root")
    assert route("/ui/") == route("/ui") == Match("ui_page")
    assert route("/ui/repository/gjkdhr/centos") == Match("ui_page", "gjkdhr/centos")
    assert route("/ui/image/gjkdhr/centos/httpd") == Match("ui_page", "gjkdhr/centos", "httpd")
    assert route("/ui/static/app.js") == Match("ui_static", ref="app.js")
    assert route("/ui/api/summary") == Match("ui_summary")
    assert route("/ui/api/repository/a/b") == Match("ui_repository", "a/b")
    assert route("/ui/api/image/a/b/sha256:00") == Match("ui_image", "a/b", "sha256:00")
    assert route("/ui/api/image/only").endpoint == "not_found"
    assert route("/uix").endpoint == "not_found"


def test_repositories_equal_ls_repos(served, tmp_path: Path) -> None:
    expected = cli_json("ls", "--repos", "--root", str(served.root))
    status, doc = get_json(served.host, "/ui/api/repositories")
    assert status == 200 and doc["total"] == doc["matched"] == len(expected)
    got = {row["repository"]: row for row in doc["repositories"]}
    for row in expected:
        mine = got[row["repository"]]
        for key in ("tags", "size", "exclusive", "shared"):
            assert mine[key] == row[key], (row["repository"], key)
            assert mine[f"{key}_human"] == human_size(row[key]) if key != "tags" else True
        assert mine["name"] == short_name(row["repository"])


def test_search_filters_by_substring_or_glob(served) -> None:
    names = lambda q: [r["repository"] for r in get_json(served.host, q)[1]["repositories"]]  # noqa: E731
    assert names("/ui/api/repositories?q=CENT") == ["centos", "centos6", "gjkdhr/centos"]
    assert names("/ui/api/repositories?q=centos*") == ["centos", "centos6"]
    assert names("/ui/api/repositories?q=nothing") == []
    page = get_json(served.host, "/ui/api/repositories?offset=2&limit=2")[1]
    assert [r["repository"] for r in page["repositories"]] == ["centos6", "gjkdhr/centos"]
    assert request(served.host, "GET", "/ui/api/repositories?limit=x")[0] == 400


def test_repository_tags_equal_ls_newest_first(served) -> None:
    expected = [
        r for r in cli_json("ls", "--root", str(served.root)) if r["repository"] == "centos"
    ]
    status, doc = get_json(served.host, "/ui/api/repository/centos")
    assert status == 200
    got = {t["tag"]: t for t in doc["tag_rows"]}
    assert set(got) == {r["tag"] for r in expected}
    for row in expected:
        for key in ("digest", "platforms", "size", "exclusive", "created", "layers"):
            assert got[row["tag"]][key] == row[key]
        assert got[row["tag"]]["short_digest"] == row["digest"][7:19]
    order = [(t["pushed"], t["created"]) for t in doc["tag_rows"]]
    assert order == sorted(order, reverse=True)
    assert request(served.host, "GET", "/ui/api/repository/nope")[0] == 404


@pytest.mark.parametrize(
    ("path", "args"),
    [
        ("centos/httpd", ["centos:httpd"]),
        ("gjkdhr/centos/httpd", ["gjkdhr/centos:httpd"]),
        ("multi/latest?platform=linux/arm64/v8", ["multi:latest", "--platform", "linux/arm64/v8"]),
    ],
)
def test_image_layers_equal_layers_json(served, path: str, args: list[str]) -> None:
    expected = cli_json("layers", *args, "--root", str(served.root))
    status, doc = get_json(served.host, f"/ui/api/image/{path}")
    assert status == 200
    report = doc["layers_report"]
    for layer in report["layers"]:
        assert layer.pop("size_human") == human_size(layer["size"])
        assert layer.pop("short_digest") == layer["digest"][7:19]
    assert report == expected
    config = doc["config_summary"]
    assert config is not None and config["digest"] == expected["config"]
    shared = {label for layer in expected["layers"] for label in layer["shared_with"]}
    assert {s["label"] for s in doc["sharers"]} == shared


def test_image_by_digest_and_unknown_references(served) -> None:
    digest = cli_json("layers", "centos:6.7", "--root", str(served.root))["digest"]
    status, doc = get_json(served.host, f"/ui/api/image/centos/{digest}")
    assert status == 200 and doc["layers_report"]["digest"] == digest
    assert request(served.host, "GET", "/ui/api/image/centos/nope")[0] == 404
    assert request(served.host, "GET", "/ui/api/image/multi/latest?platform=x/y")[0] == 400


def test_root_is_the_page_for_a_browser_only(served) -> None:
    status, headers, body = request(served.host, "GET", "/")
    assert status == 404 and json.loads(body)["errors"][0]["code"] == "NOT_FOUND"
    status, headers, body = request(served.host, "GET", "/", headers={"Accept": BROWSER_ACCEPT})
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert b"/ui/static/app.js" in body and b"<script>" not in body
    assert request(served.host, "POST", "/", headers={"Accept": BROWSER_ACCEPT})[0] == 404
    assert request(served.host, "GET", "/ui/repository/centos")[0] == 200
    assert request(served.host, "GET", "/ui/static/app.js")[1]["Content-Type"].startswith(
        "text/javascript"
    )
    assert request(served.host, "GET", "/ui/static/../app.py")[0] == 404
    assert request(served.host, "GET", "/v2/")[2] == b"{}"


def test_the_page_is_read_only(served) -> None:
    for path in ("/ui/api/repository/centos", "/ui/", "/ui/api/summary"):
        assert request(served.host, "DELETE", path)[0] == 405


def test_the_page_needs_the_api_credentials(tmp_path: Path) -> None:
    users = tmp_path / "htpasswd"
    set_password(users, "alice", "wonderland")
    root = copy_fixture(FIXTURE_V2, tmp_path / "v2")
    ctx = open_context(root, Options())
    app = App(ctx, Htpasswd(users, "regtool"))
    for path in ("/", "/ui/", "/ui/api/summary", "/ui/static/app.js"):
        answer = app.handle(Request("GET", path, {}, {"accept": BROWSER_ACCEPT}))
        assert answer.status == 401 and answer.headers["WWW-Authenticate"].startswith("Basic")
