"""`regtool htpasswd`: the file it writes is read by regtool serve and by docker-registry."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from regtool.cli.app import app
from regtool.cli.commands import htpasswd as htpasswd_command
from regtool.server.auth import Htpasswd
from tests.support.refregistry import fixturelib, http_request

runner = CliRunner()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def run(*args: str, stdin: str | None = None):
    return runner.invoke(app, ["htpasswd", *args], input=stdin)


def test_htpasswd_creates_the_file_and_reports_added(tmp_path):
    path = tmp_path / "htpasswd"
    result = run(str(path), "alice", "--password-stdin", stdin="wonderland\n")
    assert result.exit_code == 0, result.output
    assert "added alice" in result.stderr and result.stdout == ""
    assert Htpasswd(path).check(basic("alice", "wonderland")["Authorization"])


def test_htpasswd_updates_an_existing_user_and_keeps_the_others(tmp_path):
    path = tmp_path / "htpasswd"
    run(str(path), "alice", "--password-stdin", stdin="one\n")
    run(str(path), "bob", "--password-stdin", stdin="builder\n")
    result = run(str(path), "alice", "--password-stdin", stdin="two\n")
    assert result.exit_code == 0 and "updated alice" in result.stderr
    auth = Htpasswd(path)
    assert auth.users == ("alice", "bob")
    assert auth.check(basic("alice", "two")["Authorization"])
    assert not auth.check(basic("alice", "one")["Authorization"])
    assert auth.check(basic("bob", "builder")["Authorization"])


def test_htpasswd_prompts_twice_with_hidden_input(tmp_path, monkeypatch):
    monkeypatch.setattr(htpasswd_command, "_interactive", lambda: True)
    path = tmp_path / "htpasswd"
    result = run(str(path), "carol", stdin="first\nfirst\n")
    assert result.exit_code == 0, result.output
    assert "first" not in result.stdout  # the password is never echoed
    assert Htpasswd(path).check(basic("carol", "first")["Authorization"])


def test_htpasswd_prompt_asks_again_when_the_two_entries_differ(tmp_path, monkeypatch):
    monkeypatch.setattr(htpasswd_command, "_interactive", lambda: True)
    path = tmp_path / "htpasswd"
    result = run(str(path), "carol", stdin="first\nsecond\nthird\nthird\n")
    assert result.exit_code == 0, result.output
    assert Htpasswd(path).check(basic("carol", "third")["Authorization"])


def test_htpasswd_without_a_terminal_or_password_stdin_is_a_usage_error(tmp_path):
    result = run(str(tmp_path / "htpasswd"), "alice", stdin="wonderland\n")
    assert result.exit_code == 2
    assert "Error:" in result.stderr and "--password-stdin" in result.stderr
    assert not (tmp_path / "htpasswd").exists()


@pytest.mark.parametrize("user", ["al:ice", "#root", " alice"])
def test_htpasswd_refuses_user_names_the_format_cannot_hold(tmp_path, user):
    result = run(str(tmp_path / "htpasswd"), user, "--password-stdin", stdin="pw\n")
    assert result.exit_code == 2 and "invalid user name" in result.stderr
    assert not (tmp_path / "htpasswd").exists()


@pytest.mark.parametrize("stdin", ["", "\n", "x" * 73 + "\n"], ids=["none", "empty", "too-long"])
def test_htpasswd_refuses_unusable_passwords(tmp_path, stdin):
    result = run(str(tmp_path / "htpasswd"), "alice", "--password-stdin", stdin=stdin)
    assert result.exit_code == 2 and result.stderr.startswith("Error: ")
    assert not (tmp_path / "htpasswd").exists()


def test_htpasswd_into_a_missing_folder_exits_3_without_a_traceback(tmp_path):
    result = run(str(tmp_path / "no" / "htpasswd"), "alice", "--password-stdin", stdin="pw\n")
    assert result.exit_code == 3
    assert "cannot write htpasswd file" in result.stderr and "Traceback" not in result.output


def test_htpasswd_on_a_directory_exits_3(tmp_path):
    result = run(str(tmp_path), "alice", "--password-stdin", stdin="pw\n")
    assert result.exit_code == 3 and "Error: " in result.stderr


# -- the reference registry is the oracle for the file format ------------------------------


@contextmanager
def reference_registry_with_htpasswd(root: Path, htfile: Path, work: Path) -> Iterator[str]:
    """`docker-registry serve` with auth.htpasswd on 127.0.0.1; yields its base URL."""
    host = f"127.0.0.1:{fixturelib.free_port()}"
    config = work / "config.yml"
    auth = [
        "auth:",
        "  htpasswd:",
        "    realm: regtool-test",
        f"    path: {json.dumps(str(htfile))}",
    ]
    config.write_text(fixturelib.registry_config(root, host) + "\n".join(auth) + "\n")
    log = work / "registry.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [fixturelib.REGISTRY_BIN, "serve", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://{host}"
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")
            try:
                if http_request("GET", url + "/v2/", timeout=1.0)[0] == 401:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_reference_registry_accepts_a_file_written_by_regtool_htpasswd(tmp_path):
    htfile = tmp_path / "htpasswd"
    for user, password in (("alice", "wonder:land"), ("bob", "builder")):
        result = run(str(htfile), user, "--password-stdin", stdin=password + "\n")
        assert result.exit_code == 0, result.output
    (tmp_path / "root").mkdir()
    with reference_registry_with_htpasswd(tmp_path / "root", htfile, tmp_path) as url:
        status, _, headers = http_request("GET", url + "/v2/")
        assert status == 401
        assert headers["WWW-Authenticate"] == 'Basic realm="regtool-test"'
        assert http_request("GET", url + "/v2/", headers=basic("alice", "wonder:land"))[0] == 200
        assert http_request("GET", url + "/v2/", headers=basic("bob", "builder"))[0] == 200
        assert http_request("GET", url + "/v2/", headers=basic("alice", "wonder"))[0] == 401
        assert http_request("GET", url + "/v2/", headers=basic("carol", "builder"))[0] == 401
        assert http_request("GET", url + "/v2/_catalog")[0] == 401
