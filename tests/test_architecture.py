"""Import directions (DEVELOPERS.md): model and storage are leaves; only cli imports typer."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "regtool"

# package -> regtool packages it must never import
FORBIDDEN = {
    "model": {"storage", "layout", "ops", "server", "cli"},
    "storage": {"model", "layout", "ops", "server", "cli"},
    "layout": {"ops", "server", "cli"},
    "ops": {"server", "cli"},
    "server": {"cli"},
}
THIRD_PARTY_ONLY_IN_CLI = {"typer", "click"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).parts[0], path


@pytest.mark.parametrize(("package", "path"), list(modules()), ids=lambda v: str(v)[-40:])
def test_import_directions(package, path):
    for name in imports_of(path):
        parts = name.split(".")
        if parts[0] == "regtool" and len(parts) > 1:
            assert parts[1] not in FORBIDDEN.get(package, set()), f"{path} imports {name}"
        if package != "cli":
            assert parts[0] not in THIRD_PARTY_ONLY_IN_CLI, f"{path} imports {name}"
        if package in ("model", "storage"):
            assert parts[0] in ("regtool", "__future__") or _is_stdlib(parts[0]), (
                f"{path} imports {name}: model/storage use the stdlib only"
            )


def _is_stdlib(name: str) -> bool:
    import sys

    return name in sys.stdlib_module_names


def test_only_paths_modules_spell_layout_paths():
    """Path-like string literals naming layout folders live in layout/*/paths.py only."""
    markers = ("_manifests", "_layers", "_uploads", "docker/registry", "images/", "repositories/")
    offenders = []
    for _package, path in modules():
        if path.name == "paths.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
                if "/" in text and " " not in text and any(m in text for m in markers):
                    offenders.append(f"{path}:{node.lineno}: {text!r}")
    assert offenders == []
