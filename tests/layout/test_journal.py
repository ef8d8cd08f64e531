"""The undo journal: written beside the layout, read back whole, the newest found by name."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from regtool.errors import UsageError
from regtool.layout import journal
from regtool.layout.journal import Removed
from regtool.storage.filesystem import FilesystemDriver

REMOVED = (
    Removed("app", "v1", "sha256:" + "a" * 64),
    Removed("app", None, "sha256:" + "a" * 64),
    Removed("team/web", "broken", None),
)


def _driver(tmp_path):
    return FilesystemDriver(tmp_path, readonly=False, fsync=False)


def test_a_run_that_removed_nothing_writes_no_journal(tmp_path):
    assert journal.record(_driver(tmp_path), "rm", "v2", []) is None
    assert not (tmp_path / ".regtool").exists()


def test_a_written_journal_reads_back_the_same_and_stays_outside_the_layout(tmp_path):
    driver = _driver(tmp_path)
    when = datetime(2026, 12, 2, 8, 0, 0, 123456, tzinfo=UTC)
    written = journal.record(driver, "prune", "v2", REMOVED, now=when)
    assert written is not None
    assert written.name == "20261202T080000123456Z-prune.json"
    assert (tmp_path / ".regtool" / "journal" / written.name).is_file()
    assert journal.read(driver, written.name) == written
    assert written.time == "2026-12-02T08:00:00.123456Z"


def test_last_is_the_newest_and_other_files_are_ignored(tmp_path):
    driver = _driver(tmp_path)
    older = journal.record(driver, "rm", "v2", REMOVED[:1], now=datetime(2026, 1, 1, tzinfo=UTC))
    newer = journal.record(driver, "rm", "v2", REMOVED[1:], now=datetime(2026, 2, 1, tzinfo=UTC))
    (tmp_path / ".regtool" / "journal" / "notes.txt").write_text("x")
    assert journal.names(driver) == [older.name, newer.name]
    assert journal.last(driver) == newer


def test_no_journal_is_a_one_line_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no journal in this storage"):
        journal.last(_driver(tmp_path))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "damaged"),
        (json.dumps({"version": 9}).encode(), "damaged: version 9"),
        (
            json.dumps(
                {
                    "version": 1,
                    "command": "rm",
                    "time": "t",
                    "layout": "v2",
                    "removed": [{"repository": 3, "tag": None, "digest": None}],
                }
            ).encode(),
            "damaged: expected a string",
        ),
    ],
)
def test_a_damaged_journal_is_refused_in_one_line(tmp_path, content, message):
    folder = tmp_path / ".regtool" / "journal"
    folder.mkdir(parents=True)
    (folder / "20260101T000000000000Z-rm.json").write_bytes(content)
    with pytest.raises(UsageError, match=message):
        journal.read(_driver(tmp_path), "20260101T000000000000Z-rm.json")


def test_a_name_that_is_not_a_journal_is_refused_before_any_read(tmp_path):
    with pytest.raises(UsageError, match="not a journal name"):
        journal.read(_driver(tmp_path), "../../docker/registry/v2/x.json")
