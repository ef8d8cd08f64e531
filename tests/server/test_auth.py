"""regtool.server.auth: htpasswd entries written by set_password, checked as Basic auth;
failed logins throttled per client address."""

from __future__ import annotations

import base64
import http.client
import os
import threading
import time
from pathlib import Path

import bcrypt
import pytest

from regtool.errors import OperationalError, UsageError
from regtool.server.auth import (
    FORGET_AFTER,
    MAX_TRACKED,
    Htpasswd,
    HtpasswdError,
    LoginThrottle,
    parse_htpasswd,
    set_password,
)
from tests.server.conftest import in_process


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def bump_mtime(path: Path) -> None:
    """Make sure a rewrite is seen even on file systems with coarse timestamps."""
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 2_000_000_000))


@pytest.fixture
def htfile(tmp_path: Path) -> Path:
    path = tmp_path / "htpasswd"
    set_password(path, "alice", "wonderland")
    return path


def test_set_password_writes_a_bcrypt_entry_distribution_reads(htfile):
    line = htfile.read_text()
    user, _, hashed = line.strip().partition(":")
    assert user == "alice"
    assert hashed.startswith("$2b$10$")
    assert bcrypt.checkpw(b"wonderland", hashed.encode())
    assert line.endswith("\n") and line.count("\n") == 1
    assert htfile.stat().st_mode & 0o777 == 0o600


def test_check_accepts_the_right_password(htfile):
    assert Htpasswd(htfile).check(basic("alice", "wonderland"))


def test_check_refuses_a_wrong_password_unknown_user_and_no_header(htfile):
    auth = Htpasswd(htfile)
    assert not auth.check(basic("alice", "wonderlan"))
    assert not auth.check(basic("bob", "wonderland"))
    assert not auth.check(None)
    assert not auth.check("")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer abc",
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"alice-without-colon").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:wonderland").decode(),
        "Basic " + base64.b64encode(b"alice:" + b"w" * 80).decode(),
    ],
    ids=["bearer", "empty", "garbage", "no-colon", "not-utf8", "over-72-bytes"],
)
def test_check_refuses_malformed_headers(htfile, header):
    assert not Htpasswd(htfile).check(header)


def test_check_accepts_lowercase_scheme_and_password_with_colons(tmp_path):
    path = tmp_path / "htpasswd"
    set_password(path, "ci", "a:b:c")
    auth = Htpasswd(path)
    assert auth.check("basic " + base64.b64encode(b"ci:a:b:c").decode())
    assert not auth.check(basic("ci", "a:b"))


@pytest.mark.parametrize("prefix", ["$2a$", "$2b$", "$2y$"])
def test_check_reads_every_bcrypt_prefix(tmp_path, prefix):
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    path = tmp_path / "htpasswd"
    path.write_text(f"# made by htpasswd -B\n\n  carol:{prefix}{hashed[4:]}  \n")
    auth = Htpasswd(path)
    assert auth.check(basic("carol", "pw"))
    assert not auth.check(basic("carol", "pW"))


def test_malformed_lines_are_skipped_and_reported(tmp_path):
    good = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    path = tmp_path / "htpasswd"
    path.write_text(
        "no colon here\n"
        "md5user:$apr1$abc$def\n"
        f":{good}\n"
        "broken:$2y$10$short\n"
        f"dave:{good}\n"
        "# comment:$2y$ with a colon\n"
    )
    auth = Htpasswd(path)
    assert auth.users == ("broken", "dave")
    assert auth.skipped_lines == (1, 2, 3)
    assert auth.check(basic("dave", "pw"))
    assert not auth.check(basic("broken", "pw"))
    assert not auth.check(basic("# comment", "$2y$ with a colon"))


def test_a_later_line_for_the_same_user_wins_as_in_distribution():
    entries, skipped = parse_htpasswd("eve:$2y$04$first\neve:$2y$04$second\n")
    assert entries == {"eve": b"$2y$04$second"} and skipped == ()


def test_file_changes_are_picked_up_on_the_next_check(htfile):
    auth = Htpasswd(htfile)
    assert auth.check(basic("alice", "wonderland"))
    assert set_password(htfile, "alice", "looking-glass") is False
    bump_mtime(htfile)
    assert not auth.check(basic("alice", "wonderland"))
    assert auth.check(basic("alice", "looking-glass"))
    assert set_password(htfile, "bob", "builder") is True
    bump_mtime(htfile)
    assert auth.check(basic("bob", "builder"))


def test_removed_user_is_refused_even_after_a_cached_success(htfile):
    auth = Htpasswd(htfile)
    header = basic("alice", "wonderland")
    assert auth.check(header) and auth.check(header)
    htfile.write_text("# nobody\n")
    bump_mtime(htfile)
    assert not auth.check(header)


def test_missing_file_fails_at_construction_with_a_hint(tmp_path):
    with pytest.raises(HtpasswdError) as caught:
        Htpasswd(tmp_path / "absent")
    assert isinstance(caught.value, OperationalError)
    assert "absent" in caught.value.message and caught.value.hint


def test_unreadable_file_fails_at_construction(tmp_path):
    with pytest.raises(HtpasswdError):
        Htpasswd(tmp_path)  # a directory cannot be read as a file


def test_file_vanishing_later_refuses_everyone(htfile):
    auth = Htpasswd(htfile)
    header = basic("alice", "wonderland")
    assert auth.check(header)
    htfile.unlink()
    assert not auth.check(header)
    set_password(htfile, "alice", "wonderland")
    assert auth.check(header)


def test_challenge_names_the_realm(htfile):
    assert Htpasswd(htfile).challenge() == 'Basic realm="regtool"'
    assert Htpasswd(htfile, realm='my "lab"').challenge() == 'Basic realm="my \\"lab\\""'


def test_set_password_keeps_other_lines_and_replaces_duplicates(tmp_path):
    path = tmp_path / "htpasswd"
    path.write_text("# team registry\nbob:$2y$04$x\nalice:$2y$04$old1\nalice:$2y$04$old2\n")
    path.chmod(0o640)
    assert set_password(path, "alice", "new") is False
    lines = path.read_text().splitlines()
    assert lines[:2] == ["# team registry", "bob:$2y$04$x"]
    assert len(lines) == 3 and lines[2].startswith("alice:$2b$10$")
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["htpasswd"]  # no temp file left


@pytest.mark.parametrize("user", ["", "a:b", " alice", "#admin", "new\nline"])
def test_set_password_refuses_bad_user_names(tmp_path, user):
    with pytest.raises(UsageError):
        set_password(tmp_path / "htpasswd", user, "pw")
    assert not (tmp_path / "htpasswd").exists()


@pytest.mark.parametrize("password", ["", "x" * 73])
def test_set_password_refuses_empty_and_overlong_passwords(tmp_path, password):
    with pytest.raises(UsageError):
        set_password(tmp_path / "htpasswd", "alice", password)


def test_set_password_into_a_missing_folder_is_an_operational_error(tmp_path):
    with pytest.raises(HtpasswdError, match="cannot write"):
        set_password(tmp_path / "no" / "htpasswd", "alice", "pw")


def test_concurrent_checks_agree(htfile):
    auth = Htpasswd(htfile)
    results: list[bool] = []

    def worker(password: str) -> None:
        results.append(auth.check(basic("alice", password)))

    threads = [threading.Thread(target=worker, args=(pw,)) for pw in ["wonderland", "x"] * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 4 + [True] * 4


# -- throttling failed logins (issue 8) ----------------------------------------------------


def test_five_failures_are_free_then_the_delay_doubles_from_0_1_s_up_to_2_s():
    throttle = LoginThrottle()
    delays = [throttle.failed("10.0.0.1") for _ in range(12)]
    assert delays == [0, 0, 0, 0, 0, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]


def test_a_success_forgets_the_failures_of_that_address():
    throttle = LoginThrottle()
    for _ in range(7):
        throttle.failed("10.0.0.1")
    throttle.succeeded("10.0.0.1")
    assert throttle.failures("10.0.0.1") == 0
    assert throttle.failed("10.0.0.1") == 0


def test_each_address_is_throttled_on_its_own():
    throttle = LoginThrottle()
    for _ in range(9):
        throttle.failed("10.0.0.1")
    assert throttle.failed("10.0.0.2") == 0
    assert throttle.failures("10.0.0.1") == 9 and throttle.failures("10.0.0.2") == 1


def test_an_address_quiet_for_long_enough_starts_afresh():
    now = [1000.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    for _ in range(8):
        throttle.failed("10.0.0.1")
    now[0] += FORGET_AFTER + 1
    assert throttle.failed("10.0.0.1") == 0 and throttle.failures("10.0.0.1") == 1


def test_the_oldest_addresses_are_forgotten_beyond_the_table_size():
    throttle = LoginThrottle()
    for number in range(MAX_TRACKED + 10):
        throttle.failed(f"10.{number >> 16}.{(number >> 8) & 255}.{number & 255}")
    assert throttle.failures("10.0.0.0") == 0  # the first one made room
    assert throttle.failures(f"10.0.{(MAX_TRACKED + 9) >> 8}.{(MAX_TRACKED + 9) & 255}") == 1


def _status(host: str, authorization: str, source: str) -> int:
    address, port = host.rsplit(":", 1)
    conn = http.client.HTTPConnection(address, int(port), timeout=30, source_address=(source, 0))
    try:
        conn.request("GET", "/v2/", headers={"Authorization": authorization})
        return conn.getresponse().status
    finally:
        conn.close()


def test_wrong_passwords_slow_down_their_address_while_a_logged_in_client_stays_fast(
    htfile, tmp_path
):
    good, bad = basic("alice", "wonderland"), basic("alice", "guess")
    with in_process(tmp_path / "root", auth=Htpasswd(htfile)) as served:
        assert _status(served.host, good, "127.0.0.1") == 200  # logged in (bcrypt once)
        failures: list[float] = []

        def attacker() -> None:
            for _ in range(8):
                started = time.monotonic()
                assert _status(served.host, bad, "127.0.0.2") == 401
                failures.append(time.monotonic() - started)

        thread = threading.Thread(target=attacker)
        thread.start()
        answered: list[float] = []
        while thread.is_alive() or not answered:
            started = time.monotonic()
            assert _status(served.host, good, "127.0.0.1") == 200
            answered.append(time.monotonic() - started)
        thread.join()
    assert len(failures) == 8
    assert failures[-1] >= 0.4 and sum(failures[5:]) >= 0.7  # held 0.1, 0.2, 0.4 s
    assert max(answered) < 0.5, answered  # the other client was never held up
