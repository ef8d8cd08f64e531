"""Retention policies: the rules against a brute-force oracle, globs, and bad files by line."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from regtool.model.policy import (
    Policies,
    Policy,
    PolicyError,
    Rule,
    TagTime,
    decide,
    glob_match,
    user_pattern,
)
from regtool.ops.policy_file import load_policies

NOW = 1_800_000_000.0
DAY = 86400.0
PATTERN_CHOICES = ["^v[0-9]+$", "^latest$", "rc", "^pr-", ".*", "^v1", "x$", "^stable$"]
TAG_CHOICES = [
    "latest",
    "stable",
    "v1",
    "v2",
    "v10",
    "v11",
    "v1-rc1",
    "pr-1",
    "pr-22",
    "main",
    "box",
    "v3",
    "dev-x",
    "rc2",
]


def oracle(policy: Policy, tags: dict[str, float]) -> dict[str, bool]:
    """The rules as the issue states them, written the straightforward way."""
    kept = {}
    for tag, pushed in tags.items():
        keep = False
        for rule in policy.keep:
            matches = [t for t in tags if any(re.search(p, t) for p in rule.patterns)]
            if tag not in matches:
                continue
            if rule.most_recent is None and rule.pushed_within is None:
                keep = True
            if rule.most_recent is not None:
                ranked = sorted(matches, key=lambda t: (-tags[t], t))
                if tag in ranked[: rule.most_recent]:
                    keep = True
            if rule.pushed_within is not None and NOW - pushed <= rule.pushed_within:
                keep = True
        kept[tag] = keep
    return kept


def random_policy(rng: random.Random) -> Policy:
    rules = []
    for number in range(1, rng.randint(0, 3) + 1):
        patterns = tuple(rng.sample(PATTERN_CHOICES, rng.randint(1, 2)))
        most_recent = rng.choice([None, None, 0, 1, 2, 5])
        within = rng.choice([None, None, 3 * DAY, 10 * DAY])
        text = f"{int(within // DAY)}d" if within else ""
        compiled = tuple(user_pattern(p) for p in patterns)
        rules.append(Rule(number, patterns, most_recent, within, text, 0, compiled))
    return Policy(1, ("**",), tuple(rules))


def test_decide_agrees_with_a_brute_force_oracle_on_random_histories():
    rng = random.Random(20261202)
    checked = kept_some = removed_some = 0
    for _ in range(3000):
        policy = random_policy(rng)
        names = rng.sample(TAG_CHOICES, rng.randint(0, len(TAG_CHOICES)))
        tags = {name: NOW - rng.choice([0, 1, 2, 5, 9, 11, 30]) * DAY for name in names}
        verdict = decide(policy, [TagTime(t, p) for t, p in tags.items()], NOW)
        assert {t: r is not None for t, r in verdict.items()} == oracle(policy, tags), (
            policy,
            tags,
        )
        checked += len(tags)
        kept_some += sum(r is not None for r in verdict.values())
        removed_some += sum(r is None for r in verdict.values())
    assert checked > 10_000 and kept_some > 1000 and removed_some > 1000  # not vacuous


def test_the_named_rule_is_the_first_that_keeps_and_says_key_and_value():
    policy = load_policies(
        _write(
            "policies:\n"
            "  - repositories: [app]\n"
            "    keep:\n"
            "      - patterns: ['^latest$', '^stable$']\n"
            "      - patterns: ['^v[0-9]+$']\n"
            "        most_recent: 1\n"
            "      - patterns: ['^v[0-9]+$']\n"
            "        pushed_within: 10d\n"
        )
    ).policies[0]
    tags = [
        TagTime("stable", NOW),
        TagTime("v1", NOW - DAY),
        TagTime("v2", NOW),
        TagTime("v3", NOW - 20 * DAY),
    ]
    assert decide(policy, tags, NOW) == {
        "stable": "policy 1 keep 1: patterns ^stable$",
        "v2": "policy 1 keep 2: most_recent 1",
        "v1": "policy 1 keep 3: pushed_within 10d",
        "v3": None,
    }


@pytest.mark.parametrize(
    ("glob", "name", "expected"),
    [
        ("app", "app", True),
        ("app", "apps", False),
        ("team/*", "team/a", True),
        ("team/*", "team/a/b", False),
        ("team/**", "team/a/b", True),
        ("team/**", "team", False),
        ("*", "a/b", False),
        ("**", "a/b", True),
        ("a?c", "abc", True),
        ("a?c", "a/c", False),
        ("*/*/x", "a/b/x", True),
        ("**/x", "a/b/x", True),
        ("a*b*c*d*e*f*g", "a" * 200 + "h", False),
    ],
)
def test_repository_globs(glob, name, expected):
    assert glob_match(glob, name) is expected


def test_first_governing_policy_wins_and_library_names_answer_short():
    first = Policy(1, ("team/**",), ())
    second = Policy(2, ("*",), ())
    policies = Policies("p.yml", (first, second))
    assert policies.governing("team/a/b") is first
    assert policies.governing("library/centos") is second
    assert policies.governing("other/x") is None


GOOD = """\
policies:
  - repositories: ["app"]
    keep:
      - patterns: ["^v"]
        most_recent: 2
"""

# (description, file text, line named, words in the message)
BAD = [
    ("unknown top key", "policys: []\n", 1, "unknown key 'policys'"),
    ("unknown policy key", GOOD + "    untaged: keep\n", 6, "unknown key 'untaged'"),
    ("unknown rule key", GOOD + "        newest: 3\n", 6, "unknown key 'newest'"),
    ("bad regex", GOOD.replace('"^v"', '"^v("'), 4, "not a regular expression"),
    ("nested quantifier", GOOD.replace('"^v"', '"(a+)+"'), 4, "exponential"),
    ("negative count", GOOD.replace("2\n", "-1\n"), 5, "must not be negative"),
    ("count not a number", GOOD.replace("2\n", "two\n"), 5, "whole number"),
    ("duration without unit", GOOD + "        pushed_within: 10\n", 6, "with a unit"),
    ("duration bad unit", GOOD + "        pushed_within: 10y\n", 6, "with a unit"),
    (
        "rule without patterns",
        GOOD.replace('      - patterns: ["^v"]\n        most_recent', "      - most_recent"),
        4,
        "no 'patterns'",
    ),
    ("empty patterns", GOOD.replace('["^v"]', "[]"), 4, "non-empty list"),
    ("untagged value", GOOD + "    untagged: maybe\n", 6, "keep or delete"),
    ("allow_empty value", GOOD + "    allow_empty: 3\n", 6, "true or false"),
    ("no repositories", "policies:\n  - keep: []\n", 2, "no 'repositories'"),
    ("not yaml", "policies: [\n  - a: b\n", 2, "not valid YAML"),
    ("empty file", "", 1, "empty"),
    ("duplicate key", GOOD + "    keep: []\n", 6, "duplicate key"),
]


@pytest.mark.parametrize(("text", "line", "words"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_policy_files_name_their_line(text, line, words, tmp_path):
    path = tmp_path / "policy.yml"
    path.write_text(text)
    with pytest.raises(PolicyError) as caught:
        load_policies(path)
    assert caught.value.message.startswith(f"policy.yml:{line}: "), caught.value.message
    assert words in caught.value.message


def _write(text: str) -> Path:
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="policy-"))
    path = folder / "policy.yml"
    path.write_text(text)
    return path
