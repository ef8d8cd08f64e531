"""The access log of a real `regtool serve --htpasswd`: why each refused login was refused,
in the log only (every client gets the same 401 body)."""

from __future__ import annotations

import base64
import http.client
import json
from pathlib import Path

import pytest

from regtool.server.auth import set_password
from tests.support.serve import subprocess_server

# (Authorization header or None, the reason logged, the user name logged)
ATTEMPTS = [
    (None, "no credentials", None),
    ("Bearer abc", "malformed header", None),
    ("Basic %%%", "malformed header", None),
    ("Basic " + base64.b64encode(b"alice:wrong").decode(), "wrong password", "alice"),
    ("Basic " + base64.b64encode(b"mallory:secret").decode(), "unknown user", "mallory"),
]
GOOD = "Basic " + base64.b64encode(b"alice:secret").decode()


def _get(host: str, header: str | None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, timeout=30)
    try:
        conn.request("GET", "/v2/", headers={"Authorization": header} if header else {})
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def _serve_and_try(tmp_path: Path, *args: str) -> tuple[list[tuple[int, bytes]], str]:
    users = tmp_path / "htpasswd"
    set_password(users, "alice", "secret")
    answers = []
    with subprocess_server(tmp_path / "root", "--htpasswd", str(users), *args) as served:
        for header, _, _ in ATTEMPTS:
            answers.append(_get(served.host, header))
        answers.append(_get(served.host, GOOD))
    assert served.log is not None
    return answers, served.log.read_text()


def test_refused_logins_say_why_in_the_json_access_log_and_not_in_the_answer(tmp_path):
    answers, log = _serve_and_try(tmp_path, "--log-format", "json")
    refused = answers[:-1]
    assert [status for status, _ in refused] == [401] * len(ATTEMPTS)
    assert len({body for _, body in refused}) == 1  # the same body whatever the reason
    assert b"password" not in refused[0][1] and b"unknown" not in refused[0][1]
    assert answers[-1][0] == 200
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    requests = [r for r in records if r.get("path") == "/v2/"]
    assert len(requests) == len(ATTEMPTS) + 1, log
    for record, (_, reason, user) in zip(requests, ATTEMPTS, strict=False):
        assert record["status"] == 401
        assert record["login_failure"] == reason
        assert record.get("login_user") == user
        assert record["user"] is None
    assert "login_failure" not in requests[-1] and requests[-1]["user"] == "alice"
    assert "secret" not in log and "wrong" not in log.replace("wrong password", "")


def test_refused_logins_say_why_in_the_plain_access_log(tmp_path):
    answers, log = _serve_and_try(tmp_path)
    assert [status for status, _ in answers] == [401] * len(ATTEMPTS) + [200]
    lines = [line for line in log.splitlines() if '"GET /v2/"' in line]
    assert len(lines) == len(ATTEMPTS) + 1, log
    for line, (_, reason, user) in zip(lines, ATTEMPTS, strict=False):
        suffix = f"login failed: {reason}" + (f' (user "{user}")' if user else "")
        assert line.endswith(suffix), line
    assert "login failed" not in lines[-1]


@pytest.mark.parametrize("name", ['eve"\nforged 200', "\x1b[31mred"])
def test_a_hostile_user_name_cannot_forge_a_plain_log_line(tmp_path, name):
    users = tmp_path / "htpasswd"
    set_password(users, "alice", "secret")
    header = "Basic " + base64.b64encode(f"{name}:pw".encode()).decode()
    with subprocess_server(tmp_path / "root", "--htpasswd", str(users)) as served:
        assert _get(served.host, header)[0] == 401
    assert served.log is not None
    lines = [line for line in served.log.read_text().splitlines() if '"GET /v2/"' in line]
    assert len(lines) == 1
    assert lines[0].endswith(f"login failed: unknown user (user {json.dumps(name)})")
    assert "\x1b" not in served.log.read_text()
