"""The ls and layers commands as users run them: formats, options, errors and exit codes."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from regtool import __version__
from regtool.cli.app import COMMANDS, app, main
from regtool.layout.detect import open_reader


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None):
        return runner.invoke(app, list(args), env=env, catch_exceptions=False)

    return invoke


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(run, flag):
    result = run(flag)
    assert result.exit_code == 0 and result.stdout.strip() == f"regtool {__version__}"


def test_layers_by_digest_names_the_digest_once(run, v2_root):
    rows = json.loads(run("ls", "busybox", "--root", str(v2_root), "-f", "json").stdout)
    digest = rows[0]["digest"]
    for ref in (f"busybox@{digest}", f"busybox@{digest[7:19]}"):
        first = run("layers", ref, "--root", str(v2_root)).stdout.splitlines()[0]
        assert first == f"busybox@{digest}  tagged latest"
    first = run("layers", "busybox", "--root", str(v2_root)).stdout.splitlines()[0]
    assert first == f"busybox:latest  {digest}"
    last = run("layers", "busybox", "--root", str(v2_root)).stdout.splitlines()[-1]
    assert last == "1 layer, 3.0 KiB"  # not "1 layers"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_help_has_an_example(run, command):
    result = run(command, "--help")
    assert result.exit_code == 0 and "Example:" in result.stdout


def test_ls_json_contract(run, v2_root, place_of):
    result = run("ls", *place_of(v2_root).args, "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    required = {
        "repository",
        "tag",
        "digest",
        "size",
        "exclusive",
        "layers",
        "created",
        "platforms",
    }
    assert all(required <= set(row) for row in rows)
    multi = next(row for row in rows if row["repository"] == "multi")
    assert multi["platforms"] == ["linux/amd64", "linux/arm64/v8"]
    assert isinstance(multi["size"], int)


def test_ls_yaml_equals_json(run, v1_root):
    as_json = json.loads(run("ls", "--root", str(v1_root), "-f", "json").stdout)
    as_yaml = yaml.safe_load(run("ls", "--root", str(v1_root), "-f", "yaml").stdout)
    assert as_json == as_yaml
    assert {row["repository"] for row in as_json} >= {"library/centos", "gjkdhr/centos"}


def test_ls_table_shows_library_names_short_and_human_sizes(run, v1_root):
    result = run("ls", "--root", str(v1_root))
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["REPOSITORY", "TAG", "DIGEST"]
    assert any(line.startswith("centos ") and " httpd " in line for line in lines)
    assert "library/" not in result.stdout and "KiB" in result.stdout


def test_ls_repos_table(run, v2_root, place_of):
    result = run("ls", "--repos", *place_of(v2_root).args, "-f", "json")
    repos = {row["repository"]: row for row in json.loads(result.stdout)}
    assert repos["centos"]["tags"] == 2
    assert repos["centos"]["size"] == repos["centos"]["exclusive"] + repos["centos"]["shared"]


def test_root_from_environment_and_from_distribution_config(run, v2_root, tmp_path):
    by_env = run("ls", "-f", "json", env={"REGTOOL_ROOT": str(v2_root)})
    config = tmp_path / "config.yml"
    config.write_text(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: " + str(v2_root) + "\n"
    )
    by_config = run("ls", "-f", "json", "--config", str(config))
    assert by_env.exit_code == by_config.exit_code == 0
    assert json.loads(by_env.stdout) == json.loads(by_config.stdout) != []


def test_missing_root_is_an_operational_error(run, tmp_path):
    result = run("ls", "--root", str(tmp_path / "nope"))
    assert result.exit_code == 3
    assert result.stderr.startswith("Error: storage root ") and "Traceback" not in result.output


def test_unrecognised_root_is_an_operational_error(run, tmp_path):
    (tmp_path / "junk.txt").write_text("hello")
    result = run("ls", "--root", str(tmp_path))
    assert result.exit_code == 3 and "holds no registry storage" in result.stderr


def test_empty_folder_is_an_empty_registry(run, tmp_path):
    result = run("ls", "--root", str(tmp_path), "-f", "json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []


def test_config_with_another_driver_is_a_usage_error(run, tmp_path):
    config = tmp_path / "config.yml"
    config.write_text("version: 0.1\nstorage:\n  s3:\n    bucket: x\n")
    result = run("ls", "--config", str(config))
    assert result.exit_code == 2 and "s3" in result.stderr


def test_warnings_go_to_stderr_and_rows_are_marked(run, v2_root, place_of):
    from regtool.layout.v2 import paths

    (v2_root / paths.tag_current_link("sshd", "latest")).write_bytes(b"")
    result = run("ls", *place_of(v2_root).args)
    assert result.exit_code == 0
    assert "warning: " in result.stderr and "empty digest" in result.stderr
    assert any(line.startswith("! sshd") for line in result.stdout.splitlines())


def test_layers_json_contract(run, v1_root):
    result = run("layers", "centos:httpd", "--root", str(v1_root), "-f", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {"reference", "digest", "platform", "platforms", "layers"} <= set(doc)
    assert doc["reference"] == "library/centos:httpd"
    assert doc["platform"] is None and doc["platforms"] == []
    for layer in doc["layers"]:
        assert {"digest", "size", "shared_with"} <= set(layer)
    assert "library/centos:6.7" in doc["layers"][0]["shared_with"]


def test_layers_table_names_sharers(run, v2_root, place_of):
    result = run("layers", "centos:httpd", *place_of(v2_root).args)
    assert result.exit_code == 0
    first = result.stdout.splitlines()[3]
    assert "centos:6.7" in first and "sshd:latest" in first


def test_layers_unknown_reference_exit_2_with_suggestions(run, v1_root):
    result = run("layers", "centos:htpd", "--root", str(v1_root))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "Error: unknown tag: centos:htpd",
        "Hint: did you mean: centos:httpd, centos:6.7",
    ]


def test_main_loads_only_the_command_it_runs(monkeypatch, v2_root, capsys):
    import sys

    for name in [m for m in sys.modules if m.startswith("regtool.cli.commands.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "argv", ["regtool", "ls", "--root", str(v2_root), "-f", "json"])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0
    assert json.loads(capsys.readouterr().out)
    loaded = {m for m in sys.modules if m.startswith("regtool.cli.commands.")}
    assert loaded == {"regtool.cli.commands.ls"}


def test_ls_beside_a_repository_loop_lists_every_real_tag_and_warns(run, v2_root, v2_expected):
    from regtool.layout.v2 import paths as v2paths

    (v2_root / v2paths.repository("loop")).symlink_to("..")
    result = run("ls", "--root", str(v2_root), "--format", "json")
    assert result.exit_code == 0
    tags = sorted((row["repository"], row["tag"]) for row in json.loads(result.stdout))
    assert tags == sorted((r, t) for r, ts in v2_expected["tags"].items() for t in ts)
    assert f"warning: {v2paths.repository('loop')}: a symbolic link to '..'" in result.stderr


@pytest.mark.parametrize("repos", [False, True])
def test_ls_table_ends_with_the_totals_and_json_stays_the_rows(run, v2_root, repos):
    from regtool.cli.output import human_size
    from regtool.ops.ls import list_repositories_with_totals, list_tags_with_totals

    flags = ["--repos"] if repos else []
    listing = list_repositories_with_totals if repos else list_tags_with_totals
    rows, totals = listing(open_reader(v2_root))
    table = run("ls", *flags, "--root", str(v2_root)).stdout.splitlines()
    assert table[-1] == (
        f"total {human_size(totals.size)} in {totals.blobs} blobs: "
        f"{human_size(totals.shared)} shared, {human_size(totals.exclusive)} exclusive"
    )
    assert len(table) == len(rows) + 3
    doc = json.loads(run("ls", *flags, "--root", str(v2_root), "-f", "json").stdout)
    assert isinstance(doc, list) and len(doc) == len(rows)
