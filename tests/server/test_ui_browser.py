"""The web page in a real browser: Debian's chromium, headless, driven by Playwright's
Python package (never `playwright install`: no browser is downloaded), against a real
`regtool serve` on the tree the reference registry wrote. Screenshots go to the test's
tmp folder (or $REGTOOL_ARTIFACTS when set)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright import sync_api  # the test extra; CI installs Debian's chromium

from regtool.model.units import human_size
from regtool.server.auth import set_password
from tests.server.conftest import FIXTURE_V2, copy_fixture, subprocess_server
from tests.support.scripts import load_script
from tests.support.serve import REPO_ROOT

browser_lib = load_script("browser")
TIMEOUT_MS = 20_000


def cli_json(root: Path, *args: str) -> list | dict:
    done = subprocess.run(
        [sys.executable, "-m", "regtool", *args, "--root", str(root), "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as playwright:
        context = browser_lib.launch(playwright, profile, viewport={"width": 1280, "height": 800})
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    root = copy_fixture(FIXTURE_V2, tmp_path_factory.mktemp("browser") / "v2")
    with subprocess_server(root) as server:
        yield server


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("REGTOOL_ARTIFACTS", tmp_path)) / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(browser) -> Iterator[object]:
    page = browser.new_page()  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    page.close()
    assert errors == []  # no script errors, no CSP violations


def cells(row) -> list[str]:
    return [c.strip() for c in row.locator("td").all_inner_texts()]


def test_home_shows_sizes_equal_to_ls_repos_and_search_filters(served, page, artifacts) -> None:
    expected = {r["repository"]: r for r in cli_json(served.root, "ls", "--repos")}
    page.goto(served.url + "/")
    page.get_by_role("link", name="gjkdhr/centos", exact=True).wait_for()
    page.locator("#gc dd", has_text="B").wait_for()  # the gc figure once known
    table = page.get_by_role("table", name="repositories")
    rows = table.locator("tbody tr")
    assert rows.count() == len(expected)
    for i in range(rows.count()):
        name, tags, size, exclusive, shared = cells(rows.nth(i))
        row = expected[name]
        assert [tags, size, exclusive, shared] == [
            str(row["tags"]),
            human_size(row["size"]),
            human_size(row["exclusive"]),
            human_size(row["shared"]),
        ]
    assert page.locator("svg.chart rect.exclusive").count() == len(expected)
    page.screenshot(path=str(artifacts / "home.png"), full_page=True)
    page.get_by_role("searchbox").fill("cent")
    sync_api.expect(rows).to_have_count(3)  # the CSP forbids eval: no wait_for_function
    names = [cells(rows.nth(i))[0] for i in range(rows.count())]
    assert names == ["centos", "centos6", "gjkdhr/centos"]
    assert page.url.endswith("/ui/?q=cent")  # the filter is in the URL: bookmarkable
    page.screenshot(path=str(artifacts / "search.png"), full_page=True)


def test_repository_tag_image_navigation_shows_layers_json(served, page, artifacts) -> None:
    page.goto(served.url + "/")
    page.get_by_role("link", name="centos", exact=True).click()
    page.wait_for_url("**/ui/repository/centos")
    tags = page.get_by_role("table", name="tags").locator("tbody tr")
    tags.first.wait_for()
    expected_tags = {
        r["tag"]: r for r in cli_json(served.root, "ls") if r["repository"] == "centos"
    }
    assert tags.count() == len(expected_tags)
    for i in range(tags.count()):
        tag, digest, platforms, size, exclusive, *_ = cells(tags.nth(i))
        assert digest == expected_tags[tag]["digest"][7:19]
        assert size == human_size(expected_tags[tag]["size"])
        assert exclusive == human_size(expected_tags[tag]["exclusive"])
    page.screenshot(path=str(artifacts / "repository.png"), full_page=True)
    page.get_by_role("link", name="httpd", exact=True).click()
    page.wait_for_url("**/ui/image/centos/httpd")
    layers = page.get_by_role("table", name="layers").locator("tbody tr")
    layers.first.wait_for()
    expected = cli_json(served.root, "layers", "centos:httpd")
    assert layers.count() == len(expected["layers"])
    for i, layer in enumerate(expected["layers"]):
        number, digest, size, _created_by, shared = cells(layers.nth(i))
        assert (number, digest, size) == (
            str(i + 1),
            layer["digest"][7:19],
            human_size(layer["size"]),
        )
        shown = layers.nth(i).locator("td").nth(4).get_by_role("link").all_inner_texts()
        assert shown == layer["shared_with"]  # stored names are short here already
    page.screenshot(path=str(artifacts / "image.png"), full_page=True)
    # a "shared with" link leads to that image's page
    page.get_by_role("link", name="sshd:latest").first.click()
    page.wait_for_url("**/ui/image/sshd/latest")
    page.get_by_role("table", name="layers").wait_for()
    page.go_back()
    page.wait_for_url("**/ui/image/centos/httpd")


def test_index_offers_its_platforms(served, page, artifacts) -> None:
    page.goto(served.url + "/ui/image/multi/latest")
    page.get_by_role("link", name="linux/arm64/v8", exact=True).click()
    page.wait_for_url("**platform=linux%2Farm64%2Fv8")
    page.get_by_role("table", name="layers").wait_for()
    assert page.locator("[aria-current=page]").inner_text() == "linux/arm64/v8"
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.screenshot(path=str(artifacts / "multi-phone.png"), full_page=True)


def test_without_credentials_the_page_answers_401(tmp_path: Path, browser) -> None:
    users = tmp_path / "htpasswd"
    set_password(users, "alice", "wonderland")
    root = copy_fixture(FIXTURE_V2, tmp_path / "v2")
    with subprocess_server(root, "--htpasswd", str(users)) as server:
        page = browser.new_page()  # type: ignore[attr-defined]
        try:
            for path in ("/", "/ui/api/repositories", "/ui/static/app.js"):
                answer = page.request.get(server.url + path, headers={"Accept": "text/html"})
                assert answer.status == 401, path
                assert answer.headers["www-authenticate"].startswith("Basic")
            # headless chromium has no prompt to show: navigating fails as a login would
            with pytest.raises(sync_api.Error, match="ERR_INVALID_AUTH_CREDENTIALS"):
                page.goto(server.url + "/")
            token = base64.b64encode(b"alice:wonderland").decode()
            page.set_extra_http_headers({"Authorization": f"Basic {token}"})
            page.goto(server.url + "/")
            page.get_by_role("link", name="gjkdhr/centos", exact=True).wait_for()
        finally:
            page.close()
