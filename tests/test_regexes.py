"""Every regular expression in regtool answers near-miss input in linear time (issue 8).

Python's `re` backtracks: a pattern whose quantifiers can split the same text in many ways
(`(a|[-]*a)*`, `\\d+` twice in a row, ...) takes exponential or quadratic time on a crafted
near-miss, and a request naming such a repository pins a server thread for minutes. Each
compiled pattern is listed here with the near-misses that would hurt it, used the way the
code uses it; a new `re.compile` without an entry fails `test_every_pattern_is_listed`.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from regtool.model.duration import parse_duration
from regtool.model.reference import NAME_RE, parse_reference, valid_name
from regtool.ops.inventory import matches
from tests.support.timing import BOUND, seconds_taken

PACKAGE = Path(__file__).resolve().parent.parent / "regtool"


def near_misses(unit: str, tail: str = "!") -> list[str]:
    """`unit` repeated to 254 and to 9,999 characters, then a character that cannot match."""
    return [(unit * (254 // len(unit) + 1))[:254] + tail, (unit * 10_000)[:9_999] + tail]


# module -> pattern name -> (how the code applies it, near-miss inputs)
PATTERNS: dict[str, dict[str, tuple[str, list[str]]]] = {
    "regtool.model.reference": {
        "NAME_RE": (
            "fullmatch",
            near_misses("a")
            + near_misses("a", "-")
            + near_misses("a", "A")
            + near_misses("a-")
            + near_misses("-")
            + near_misses("a--")
            + near_misses("a_")
            + near_misses("a__")
            + near_misses("a.")
            + near_misses("a/")
            + near_misses("ab-c_d.e__f/"),
        ),
        "TAG_RE": ("fullmatch", near_misses("a") + near_misses("a.-") + near_misses("_")),
        "SHORT_DIGEST_RE": (
            "fullmatch",
            near_misses("a") + ["sha256:" + m for m in near_misses("0")] + near_misses("sha256:"),
        ),
    },
    "regtool.model.digest": {
        "_DIGEST": (
            "fullmatch",
            ["sha256:" + m for m in near_misses("a") + near_misses("0")] + near_misses("sha256:"),
        ),
        "_V1_ID": ("fullmatch", near_misses("a")),
    },
    "regtool.model.duration": {
        "_NUMBER": ("fullmatch", near_misses("1", "x") + near_misses("1.", "x")),
        # applied only to text `_DURATIONS` accepted (alone, findall retries every position)
        "_DURATION": ("findall", ["1" * 9_999 + "d", "1d" * 5_000, "1.5h" * 2_500]),
        "_DURATIONS": (
            "fullmatch",
            near_misses("1", "x") + near_misses("1d", "x") + near_misses("1.1", "d."),
        ),
    },
    "regtool.model.manifest": {"_SHA256": ("fullmatch", ["sha256:" + m for m in near_misses("a")])},
    "regtool.server.handlers.uploads": {
        "_UUID": ("fullmatch", near_misses("0") + near_misses("0-")),
        "_CONTENT_RANGE": (
            "fullmatch",
            near_misses("1", "x") + ["bytes " + m for m in near_misses("1-1", "/x")],
        ),
    },
    "regtool.server.handlers.blobs": {
        "_RANGE": ("fullmatch", ["bytes=" + m for m in near_misses("1", "x") + near_misses("-1")])
    },
    "regtool.server.settings": {
        "_DURATION": ("fullmatch", near_misses("1", "x") + near_misses("1", "msx")),
        "_FIELD_NAME": ("fullmatch", near_misses("a", " ") + near_misses("-", ":")),
    },
    "regtool.server.stdlib": {
        "_CHUNK_LINE": (
            "fullmatch",
            near_misses("a", "x")
            + ["1" + m for m in near_misses(" ", "x")]
            + ["1;" + m for m in near_misses(";", "\r")]
            + ["1;" + m for m in near_misses("\r", "x")],
        ),
    },
    "regtool.server.tls": {
        "_DNS_LABEL": ("fullmatch", near_misses("a", "-") + near_misses("-", "-"))
    },
    "regtool.ops.verify_v2": {"_HEX": ("fullmatch", near_misses("a"))},
    "regtool.layout.journal": {
        "_NAME": (
            "fullmatch",
            near_misses("1", "Z-rm.json")
            + ["20260101T000000000000Z-" + m for m in near_misses("a", ".jso")],
        ),
        "_COMMAND": ("fullmatch", near_misses("a", "A")),
    },
    "regtool.layout.v2.paths": {
        "TEMP_FILE": ("fullmatch", ["data." + m for m in near_misses("a-", ".tm")]),
        "_UPLOAD_ID": ("fullmatch", near_misses("0") + near_misses("0-")),
        "_UPLOAD_FILE_RE": (
            "fullmatch",
            ["hashstates/sha256/" + m for m in near_misses("1", "x")]
            + ["chunks/" + m for m in near_misses("1", "x")]
            + ["startedat." + m for m in near_misses("a-", ".tm")],
        ),
        "_LINK_FOLDER_FILE": ("fullmatch", ["link." + m for m in near_misses("a-", "x")]),
        "_REVISION_FOLDER_FILE": (
            "fullmatch",
            ["signatures/sha256/" + m for m in near_misses("a", "/link")]
            + ["link." + m for m in near_misses("0-", ".tmp!")],
        ),
        "_REPOSITORY_FILE": (
            "fullmatch",
            ["_layers/sha256/" + m for m in near_misses("a", "/link")]
            + ["_uploads/" + m for m in near_misses("0-", "/data")]
            + [
                "_manifests/revisions/sha256/" + "a" * 64 + "/signatures/sha256/" + m
                for m in near_misses("a")
            ],
        ),
    },
    "regtool.cli.commands.gc": {"_LONG_HEX": ("sub", near_misses("a", "") + near_misses("a/"))},
    "regtool.server.activity": {"_HEX": ("findall", near_misses("a", "") + near_misses("a/"))},
    "regtool.storage.s3config": {
        "_STATUS": ("search", near_misses("status code: 1") + near_misses(" ", "x")),
        "_CODE": ("search", near_misses("<Code>a") + ["<Code>" + m for m in near_misses("a")]),
        "_OS_MESSAGE": (
            "search",
            near_misses('message: "a') + ['message: "' + m for m in near_misses("a")],
        ),
    },
}


def listed() -> list[Any]:
    cases = []
    for module, patterns in PATTERNS.items():
        for name, (method, inputs) in patterns.items():
            cases.extend(
                pytest.param(
                    module,
                    name,
                    method,
                    text,
                    id=f"{module.rpartition('.')[2]}.{name}-{text[:4]}..{text[-2:]}-{len(text)}",
                )
                for text in inputs
            )
    return cases


def _re_call(node: ast.AST) -> str | None:
    """`X` when `node` is a call `re.X(...)`."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        owner = node.func.value
        if isinstance(owner, ast.Name) and owner.id == "re":
            return node.func.attr
    return None


def compiled_in_source() -> tuple[set[tuple[str, str]], list[str]]:
    """(module, name) of every `NAME = re.compile(...)` in regtool, and any other `re.x()`."""
    found: set[tuple[str, str]] = set()
    inline: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(("regtool", *path.relative_to(PACKAGE).with_suffix("").parts))
        tree = ast.parse(path.read_text())
        named = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and _re_call(node.value) == "compile":
                named.add(id(node.value))
                found.update((module, t.id) for t in node.targets if isinstance(t, ast.Name))
        for node in ast.walk(tree):
            call = _re_call(node)
            if call is not None and (call != "compile" or id(node) not in named):
                inline.append(f"{module}:{node.lineno}: re.{call}(...)")  # type: ignore[attr-defined]
    return found, inline


def test_every_pattern_is_listed() -> None:
    wanted = {(module, name) for module, names in PATTERNS.items() for name in names}
    found, inline = compiled_in_source()
    inline = [site for site in inline if site != USER_PATTERN_SITE]  # bounded below
    assert inline == [], "compile patterns into a named constant and list it here"
    assert found == wanted


def apply(module: str, name: str, method: str, text: str) -> Any:
    pattern = getattr(importlib.import_module(module), name)
    subject: str | bytes = text.encode() if isinstance(pattern.pattern, bytes) else text
    if method == "sub":
        return pattern.sub(subject[:0], subject)
    return getattr(pattern, method)(subject)


@pytest.mark.parametrize(
    ("module", "name", "method", "text"),
    listed(),
)
def test_pattern_answers_near_misses_within_bound(
    module: str, name: str, method: str, text: str
) -> None:
    assert seconds_taken(apply, module, name, method, text) < BOUND


@pytest.mark.parametrize(
    ("call", "text"),
    [
        (valid_name, "a" * 40 + "!"),  # the report's example: minutes on the old pattern
        (valid_name, "a" * 254 + "!"),
        (valid_name, "a-" * 127 + "!"),
        (parse_reference, "a" * 254 + "!:latest"),
        (parse_reference, "a/" * 127 + "!@sha256:" + "0" * 64),
        (parse_reference, "a@" + "0" * 9_999 + "!"),
        (parse_reference, "h.x/" * 2_500 + "!"),
        (parse_duration, "1" * 10_000 + "x"),
        (lambda text: matches("a" * 255, text), "*a" * 40 + "b"),
    ],
    ids=lambda v: v.__name__ if callable(v) else f"{v[:6]}..{len(v)}",
)
def test_public_parsers_answer_255_character_near_misses_within_bound(
    call: Callable[[str], Any], text: str
) -> None:
    assert seconds_taken(call, text) < BOUND


def test_name_grammar_is_unchanged_by_the_linear_form() -> None:
    accepted = ["a", "a" * 255, "a-b", "a---b", "a_b", "a__b", "a.b", "a/b/c", "0a-1.b__2/c"]
    refused = ["", "-a", "a-", "a___b", "a..b", "a._b", "a//b", "/a", "a/", "A", "a" * 256, "a!"]
    assert all(valid_name(name) for name in accepted)
    assert not any(valid_name(name) for name in refused)
    assert NAME_RE.fullmatch("a_-b") is None


# -- patterns users write (prune policies): compiled in one place, bounded by check_pattern --
def _user_pattern_site() -> str:
    import inspect

    from regtool.model import policy

    lines, start = inspect.getsourcelines(policy.user_pattern)
    offset = next(i for i, line in enumerate(lines) if "re.compile" in line)
    return f"regtool.model.policy:{start + offset}: re.compile(...)"


USER_PATTERN_SITE = _user_pattern_site()
TAG_CHARS = 128  # the longest tag distribution accepts

# the worst patterns check_pattern still accepts, with tags that make them backtrack most
ACCEPTED_WORST = [
    ("[0-9a-z]+[0-9a-z]+[0-9a-z]+b", "a"),
    (".*a.*a.*b", "a"),
    (".{0,128}.{0,128}.{0,128}b", "a"),
    ("a*a*a*b", "a"),
    ("^v[0-9]+\\.[0-9]+\\.[0-9]+$", "1."),
    ("(ab){2}[a-z]*[a-z]*[a-z]*x", "ab"),
]
REFUSED = ["(a+)+$", "(a|aa)*b", "(a*)*b", "(.*)+x", "[a-z]+[a-z]+[a-z]+[a-z]+b", "(?(1)a|b)"]


def _search_all(pattern: str, unit: str) -> list[bool]:
    from regtool.model.policy import user_pattern

    compiled = user_pattern(pattern)
    tags = [(unit * TAG_CHARS)[:n] for n in (TAG_CHARS, TAG_CHARS - 1)]
    return [compiled.search(tag) is not None for tag in tags]


@pytest.mark.parametrize(("pattern", "unit"), ACCEPTED_WORST)
def test_accepted_policy_patterns_answer_a_128_character_tag_in_time(pattern, unit):
    from regtool.model.policy import check_pattern

    assert check_pattern(pattern) is None
    assert seconds_taken(_search_all, pattern, unit) < BOUND


@pytest.mark.parametrize("pattern", REFUSED)
def test_policy_patterns_that_can_backtrack_for_long_are_refused(pattern):
    from regtool.model.policy import check_pattern

    assert check_pattern(pattern) is not None
