"""`--help` as a terminal shows it (real processes, COLUMNS set): paragraphs wrap to the
width, examples are indented alike and never wrapped, migrate's destination options apart."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from regtool.cli.app import COMMANDS
from tests.support.bombs import REPO_ROOT

BOX = ("╭", "│", "╰")


def help_text(*args: str, columns: int) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "regtool", *args, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": str(columns)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def panel(text: str, title: str) -> str:
    """The lines of the help box titled `title`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"╭─ {title} "))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("╰"))
    return "\n".join(lines[start : end + 1])


def option_names(box: str) -> set[str]:
    """The options a help box lists (first word of each row, after a `*` for required)."""
    names = set()
    for line in box.splitlines()[1:-1]:
        words = line.strip("│ ").removeprefix("* ").split()
        if words and words[0].startswith("--"):
            names.add(words[0])
    return names


def examples(text: str) -> list[str]:
    """The non-blank lines after `Example:` up to the first box."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Example:")
    found = []
    for line in lines[start + 1 :]:
        if line.startswith(BOX):
            break
        if line.strip():
            found.append(line.rstrip())
    return found


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_paragraphs_fill_the_width_and_examples_are_indented_alike(command, columns):
    text = help_text(command, columns=columns)
    lines = text.splitlines()
    assert all(len(line) <= columns for line in lines)
    shown = examples(text)
    assert shown, text
    for line in shown:  # a code line, two spaces in, never wrapped onto a second line
        assert line.startswith(("  regtool ", "  podman ")), (command, columns, line)
    for line, after in zip(lines, lines[1:], strict=False):
        if not line.strip() or not after.strip() or line.startswith(BOX):
            continue
        if after.startswith(BOX) or line.startswith("  ") or "Usage:" in line:
            continue
        # a paragraph line the next line's first word would have fitted on: hard-wrapped
        room = columns - 1 - len(line.rstrip())
        assert len(after.split()[0]) + 1 > room, (command, columns, line, after)


def test_migrate_help_shows_root_and_config_apart_from_from_and_to():
    text = help_text("migrate", columns=100)
    options = option_names(panel(text, "Options"))
    apart = panel(text, "Destination when --to is not given")
    assert {"--from", "--to", "--dry-run"} <= options
    assert not {"--root", "--config"} & options
    assert option_names(apart) == {"--root", "--config"}
    assert "when --to is not given" in apart
