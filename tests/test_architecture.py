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
# optional third-party packages a storage module may import (inside functions: regtool
# imports without them)
OPTIONAL_IN_STORAGE = {
    PACKAGE / "storage" / "objectstore.py": {"obstore"},
    PACKAGE / "storage" / "s3config.py": {"obstore", "boto3", "botocore"},  # boto3: multipart
}


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
            allowed = OPTIONAL_IN_STORAGE.get(path, set())
            assert parts[0] in ("regtool", "__future__", *allowed) or _is_stdlib(parts[0]), (
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


# The Store seam (issue 9): only storage/ and the Store module know the concrete driver and
# the lock; ops, server and cli open storage through layout.store.open_storage().
STORE_MODULE = PACKAGE / "layout" / "store.py"
CONCRETE_STORAGE = {
    f"regtool.storage.{name}"
    for name in ("filesystem", "fs_scan", "nofollow", "lock", "objectstore", "s3config")
}
# No exceptions left: gc's fast paths live in the drivers (`scanner()`, storage/fs_scan.py).
SEAM_EXCEPTIONS: set[Path] = set()


def _above_the_store():
    for package, path in modules():
        if package in ("ops", "server", "cli") and path not in SEAM_EXCEPTIONS:
            yield path


def test_ops_server_cli_never_import_the_concrete_driver_or_the_lock():
    offenders = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in _above_the_store()
        for name in imports_of(path)
        if name in CONCRETE_STORAGE
        or (name == "regtool.storage" and _imports_names(path, CONCRETE_STORAGE))
    ]
    assert offenders == []


def _imports_names(path: Path, modules_: set[str]) -> bool:
    """`from regtool.storage import filesystem` and the like."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "regtool.storage":
            if any(f"regtool.storage.{alias.name}" in modules_ for alias in node.names):
                return True
    return False


def test_only_the_store_builds_a_filesystem_driver():
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for _package, path in modules()
        if path.parts[-2] != "storage" and path != STORE_MODULE
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "FilesystemDriver(" in line
    ]
    assert offenders == []


def test_no_isinstance_on_the_filesystem_driver_outside_storage_and_the_store():
    offenders = []
    for _package, path in modules():
        if path.parts[-2] == "storage" or path == STORE_MODULE or path in SEAM_EXCEPTIONS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "isinstance"
                and "FilesystemDriver" in ast.unparse(node.args[1])
            ):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []
