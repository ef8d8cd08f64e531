"""locate() and locate_keys(): regtool's own files at the storage root (the undo journal's
`.regtool/`, the lock `.regtool.lock`) never make a root or a bucket unrecognised, and no
command trips on them."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from regtool.cli.app import app
from regtool.layout import journal
from regtool.layout.detect import BOOKKEEPING
from regtool.layout.journal import Removed
from regtool.layout.store import open_storage
from regtool.layout.v2 import paths as v2paths
from regtool.server.app import open_context
from regtool.server.handlers.context import Options
from regtool.storage.filesystem import FilesystemDriver
from regtool.storage.lock import LOCK_NAME
from tests.support.rgw import new_bucket, s3_client, s3load


def regtool(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def bookkeeping_only(root: Path) -> Path:
    """A folder holding only a journal and the lock file."""
    journal.record(FilesystemDriver(root, readonly=False), "rm", "v2", [Removed("app", "v1", None)])
    (root / LOCK_NAME).touch()
    return root


def test_the_bookkeeping_names_are_the_journal_folder_and_the_lock():
    assert BOOKKEEPING == {journal.FOLDER.partition("/")[0], LOCK_NAME}


def test_a_root_holding_only_bookkeeping_opens_as_empty(tmp_path):
    root = bookkeeping_only(tmp_path / "root")
    assert open_storage(root).layout is None
    for command in (["ls"], ["ls", "--repos"], ["gc", "--dry-run"], ["verify"]):
        code, output = regtool(*command, "--root", str(root))
        assert code == 0, (command, output)


def test_migrate_into_a_root_holding_only_bookkeeping(tmp_path, v1_root):
    root = bookkeeping_only(tmp_path / "root")
    code, output = regtool("migrate", "--from", str(v1_root), "--to", str(root), "--yes")
    assert code == 0, output
    assert open_storage(root).layout == "v2"
    assert journal.names(FilesystemDriver(root))  # the journal is still there


def test_serve_makes_a_v2_tree_in_a_root_holding_only_bookkeeping(tmp_path):
    root = bookkeeping_only(tmp_path / "root")
    context = open_context(root, Options())
    assert context.store.layout == "v2" and (root / v2paths.V2).is_dir()


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_every_command_reads_a_tree_with_a_journal_as_before(layout, v1_root, v2_root, tmp_path):
    root = v1_root if layout == "v1" else v2_root
    before = {
        command[0]: regtool(*command, "--root", str(root))
        for command in (["ls"], ["verify"], ["gc", "--dry-run", "--grace", "0"])
    }
    bookkeeping_only(root)
    for command, (code, output) in before.items():
        args = [command, *(["--dry-run", "--grace", "0"] if command == "gc" else [])]
        assert regtool(*args, "--root", str(root)) == (code, output), command
    if layout == "v2":
        tarball = tmp_path / "x.tar"
        code, output = regtool("export", "centos:6.7", "-o", str(tarball), "--root", str(root))
        assert code == 0 and tarball.stat().st_size > 0, output


def test_a_bucket_holding_only_a_journal_opens_as_empty(rgw, tmp_path):
    bucket = new_bucket(s3_client(rgw))
    s3_client(rgw).put_object(
        Bucket=bucket, Key="registry/.regtool/journal/20260101T000000000000Z-rm.json", Body=b"{}"
    )
    config = s3load.write_config(rgw, bucket, "/registry", tmp_path / "s3.yml")
    store = open_storage(config=config)
    assert store.layout is None
    assert journal.names(store.driver) == ["20260101T000000000000Z-rm.json"]
    for command in (["ls"], ["gc", "--dry-run"], ["verify"]):
        code, output = regtool(*command, "--config", str(config))
        assert code == 0, (command, output)
