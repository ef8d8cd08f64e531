"""Retention policies (`regtool prune --policy FILE`): what they say, and which tags they keep.

A policy file, close to zot's retention model:

    policies:
      - repositories: ["app", "team/**"]   # globs: `*` stays within one path segment, `**` not
        keep:                                # a tag is kept if ANY rule keeps it
          - patterns: ["^latest$"]           # Python re.search over the tag name
          - patterns: ["^v[0-9]+$"]
            most_recent: 3                   # the 3 most recently pushed matches
            pushed_within: 10d               # or any match pushed within 10 days
        untagged: keep                       # keep | delete (manifests left with no tag)
        allow_empty: false                   # may a repository lose every tag?

The first policy with a matching glob governs a repository; other repositories are not
touched. Pure: the document comes in as a `Located` tree (values with their line numbers),
built by whoever parsed the YAML, so every error names the line it is about.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from regtool.errors import UsageError
from regtool.model.duration import parse_duration

MAX_QUANTIFIERS = 3  # variable-length quantifiers in one pattern (see check_pattern)
_DURATION_UNITS = "smhdw"


class PolicyError(UsageError):
    """A policy file that cannot be used; the message starts with `FILE:LINE: `."""


@dataclass(frozen=True, slots=True)
class Located:
    """A parsed document value with the line (1-based) it starts on. Mappings hold
    `dict[str, Located]`, sequences `list[Located]`, scalars their Python value."""

    value: object
    line: int


@dataclass(frozen=True, slots=True)
class Rule:
    """One `keep` entry: tags matching any pattern, narrowed by most_recent/pushed_within."""

    number: int  # 1-based, within its policy
    patterns: tuple[str, ...]
    most_recent: int | None = None
    pushed_within: float | None = None  # seconds
    pushed_within_text: str = ""
    line: int = 0

    compiled: tuple[re.Pattern[str], ...] = field(default=(), compare=False, repr=False)

    def matching(self, tag: str) -> str | None:
        """The first pattern that matches `tag` (searched anywhere in it), or None."""
        for pattern, compiled in zip(self.patterns, self.compiled or _compiled(self), strict=True):
            if compiled.search(tag):
                return pattern
        return None


def _compiled(rule: Rule) -> tuple[re.Pattern[str], ...]:
    return tuple(user_pattern(pattern) for pattern in rule.patterns)


def user_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a pattern from a policy file, once `check_pattern` has accepted it: the one
    place user-given regular expressions are compiled (tests/test_regexes.py)."""
    return re.compile(pattern)


@dataclass(frozen=True, slots=True)
class Policy:
    number: int  # 1-based, in the file
    repositories: tuple[str, ...]
    keep: tuple[Rule, ...]
    untagged: str = "keep"  # keep | delete
    allow_empty: bool = False
    line: int = 0

    def governs(self, repository: str) -> bool:
        names = {repository, repository.removeprefix("library/")}
        return any(glob_match(glob, name) for glob in self.repositories for name in names)

    def label(self, rule: Rule, key: str, value: str) -> str:
        return f"policy {self.number} keep {rule.number}: {key} {value}"


@dataclass(frozen=True, slots=True)
class Policies:
    source: str  # the file name errors start with
    policies: tuple[Policy, ...]

    def governing(self, repository: str) -> Policy | None:
        """The first policy one of whose globs matches `repository` (stored name, or
        without `library/`)."""
        for policy in self.policies:
            if policy.governs(repository):
                return policy
        return None


@dataclass(frozen=True, slots=True)
class TagTime:
    tag: str
    pushed: float  # when its tag link was last written (seconds since the epoch)


def decide(policy: Policy, tags: Sequence[TagTime], now: float) -> dict[str, str | None]:
    """tag -> the rule that keeps it (`policy N keep M: KEY VALUE`), None when removed.

    Within a rule: every match is kept when the rule has neither most_recent nor
    pushed_within; otherwise a match is kept when it is among the `most_recent` most
    recently pushed matches (ties: by tag name) or was pushed within `pushed_within`. The
    first rule (in file order) that keeps a tag is the one named.
    """
    verdict: dict[str, str | None] = {t.tag: None for t in tags}
    for rule in policy.keep:
        matches = [(t, rule.matching(t.tag)) for t in tags]
        found = [(t, pattern) for t, pattern in matches if pattern is not None]
        if rule.most_recent is None and rule.pushed_within is None:
            for t, pattern in found:
                if verdict[t.tag] is None:
                    verdict[t.tag] = policy.label(rule, "patterns", pattern or "")
            continue
        recent: set[str] = set()
        if rule.most_recent is not None:
            newest = sorted(found, key=lambda item: (-item[0].pushed, item[0].tag))
            recent = {t.tag for t, _ in newest[: rule.most_recent]}
        for t, _ in found:
            if verdict[t.tag] is not None:
                continue
            if t.tag in recent:
                verdict[t.tag] = policy.label(rule, "most_recent", str(rule.most_recent))
            elif rule.pushed_within is not None and t.pushed >= now - rule.pushed_within:
                verdict[t.tag] = policy.label(rule, "pushed_within", rule.pushed_within_text)
    return verdict


# -- globs over repository names ----------------------------------------------------------
def glob_match(glob: str, name: str) -> bool:
    """`*` any run of characters but `/`, `**` any run at all, `?` one character but `/`;
    everything else literally. Linear in len(glob) x len(name) (no backtracking)."""
    tokens: list[str] = []
    i = 0
    while i < len(glob):
        if glob.startswith("**", i):
            tokens.append("**")
            i += 2
        else:
            tokens.append(glob[i])
            i += 1
    # reach[j]: the first k tokens can match name[:j]
    reach = [True] + [False] * len(name)
    for token in tokens:
        nxt = [False] * (len(name) + 1)
        if token in ("*", "**"):
            running = False
            for j in range(len(name) + 1):
                if token == "*" and j > 0 and name[j - 1] == "/":
                    running = False
                running = running or reach[j]
                nxt[j] = running
        else:
            for j in range(1, len(name) + 1):
                ch = name[j - 1]
                nxt[j] = reach[j - 1] and (ch == token or (token == "?" and ch != "/"))
        reach = nxt
    return reach[len(name)]


# -- regular expressions over tag names ---------------------------------------------------
def check_pattern(pattern: str) -> str | None:
    """Why `pattern` is refused (None: accepted). Tags are at most 128 characters, but
    Python's `re` backtracks: a quantifier over something that itself repeats or has
    alternatives (`(a+)+`, `(a|aa)*`) is exponential, and many variable-length quantifiers
    in a row are polynomial of a high degree. So a pattern must compile, may not nest a
    quantifier or an alternation inside a quantifier, and may hold at most
    MAX_QUANTIFIERS variable-length quantifiers: then every tag is answered in well under
    a second."""
    try:
        from re import _parser  # type: ignore[attr-defined]

        user_pattern(pattern)
        parsed = _parser.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        return f"not a regular expression: {exc}"
    count = 0

    def walk(items: object, inside: bool) -> str | None:
        nonlocal count
        for op, arg in items:  # type: ignore[attr-defined]
            name = str(op)
            if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                low, high, body = arg
                variable = high != low
                if variable:
                    count += 1
                if inside and (variable or high > 1):
                    return "a quantifier inside a quantified group can take exponential time"
                problem = walk(body, inside or high > 1)
                if problem:
                    return problem
            elif name == "BRANCH":
                if inside:
                    return "an alternation inside a quantified group can take exponential time"
                for branch in arg[1]:
                    problem = walk(branch, inside)
                    if problem:
                        return problem
            elif name == "SUBPATTERN":
                problem = walk(arg[-1], inside)
                if problem:
                    return problem
            elif name in ("ASSERT", "ASSERT_NOT", "ATOMIC_GROUP"):
                problem = walk(arg[-1] if isinstance(arg, tuple) else arg, inside)
                if problem:
                    return problem
            elif name == "GROUPREF_EXISTS":
                return "conditional groups are not supported"
        return None

    problem = walk(parsed, False)
    if problem is None and count > MAX_QUANTIFIERS:
        problem = (
            f"more than {MAX_QUANTIFIERS} variable-length quantifiers can take very long "
            "to fail on a long tag"
        )
    return problem


# -- the document ------------------------------------------------------------------------
_TOP_KEYS = ("policies",)
_POLICY_KEYS = ("repositories", "keep", "untagged", "allow_empty")
_RULE_KEYS = ("patterns", "most_recent", "pushed_within")


def parse_policies(doc: Located, source: str) -> Policies:
    """The policies of a document; PolicyError (`source:LINE: ...`) for anything wrong."""

    def fail(at: Located, message: str) -> PolicyError:
        return PolicyError(
            f"{source}:{at.line}: {message}",
            hint="see regtool prune --help for the policy file's shape",
        )

    def mapping(node: Located, what: str, keys: tuple[str, ...]) -> dict[str, Located]:
        if not isinstance(node.value, dict):
            raise fail(node, f"{what} must be a mapping")
        for key, value in node.value.items():
            if key not in keys:
                raise fail(value, f"unknown key {key!r} in {what} (known: {', '.join(keys)})")
        return node.value

    def sequence(node: Located, what: str) -> list[Located]:
        if not isinstance(node.value, list):
            raise fail(node, f"{what} must be a list")
        return node.value

    def strings(node: Located, what: str) -> list[tuple[str, Located]]:
        found = []
        items = sequence(node, what)
        if not items:
            raise fail(node, f"{what} must not be empty")
        for item in items:
            if not isinstance(item.value, str) or not item.value:
                raise fail(item, f"{what} must hold non-empty strings")
            found.append((item.value, item))
        return found

    top = mapping(doc, "the policy file", _TOP_KEYS)
    if "policies" not in top:
        raise fail(doc, "no 'policies' list")
    entries = sequence(top["policies"], "policies")
    if not entries:
        raise fail(top["policies"], "policies must not be empty")
    policies = []
    for number, entry in enumerate(entries, 1):
        what = f"policy {number}"
        fields = mapping(entry, what, _POLICY_KEYS)
        if "repositories" not in fields:
            raise fail(entry, f"{what} has no 'repositories'")
        globs = tuple(value for value, _ in strings(fields["repositories"], "repositories"))
        rules = []
        keep = fields.get("keep")
        for rule_number, node in enumerate(sequence(keep, "keep") if keep else [], 1):
            rules.append(_rule(node, f"{what} keep {rule_number}", rule_number, fail, mapping))
        untagged = fields.get("untagged")
        if untagged is not None and untagged.value not in ("keep", "delete"):
            raise fail(untagged, f"untagged must be keep or delete, not {untagged.value!r}")
        allow = fields.get("allow_empty")
        if allow is not None and not isinstance(allow.value, bool):
            raise fail(allow, f"allow_empty must be true or false, not {allow.value!r}")
        policies.append(
            Policy(
                number,
                globs,
                tuple(rules),
                str(untagged.value) if untagged is not None else "keep",
                bool(allow.value) if allow is not None else False,
                entry.line,
            )
        )
    return Policies(source, tuple(policies))


def _rule(
    node: Located,
    what: str,
    number: int,
    fail: Callable[[Located, str], PolicyError],
    mapping: Callable[[Located, str, tuple[str, ...]], dict[str, Located]],
) -> Rule:
    fields = mapping(node, what, _RULE_KEYS)
    if "patterns" not in fields:
        raise fail(node, f"{what} has no 'patterns' (use [\".*\"] to match every tag)")
    items = fields["patterns"]
    if not isinstance(items.value, list) or not items.value:
        raise fail(items, "patterns must be a non-empty list")
    patterns = []
    for item in items.value:
        if not isinstance(item.value, str) or not item.value:
            raise fail(item, "patterns must hold non-empty strings")
        problem = check_pattern(item.value)
        if problem:
            raise fail(item, f"pattern {item.value!r}: {problem}")
        patterns.append(item.value)
    most_recent = None
    if "most_recent" in fields:
        count = fields["most_recent"]
        if isinstance(count.value, bool) or not isinstance(count.value, int):
            raise fail(count, f"most_recent must be a whole number, not {count.value!r}")
        if count.value < 0:
            raise fail(count, f"most_recent must not be negative ({count.value})")
        most_recent = count.value
    within, text = None, ""
    if "pushed_within" in fields:
        node_within = fields["pushed_within"]
        text = str(node_within.value).strip()
        within = _duration(text)
        if within is None:
            raise fail(
                node_within,
                f"pushed_within {node_within.value!r} is not a duration with a unit "
                "(s, m, h, d, w: 90m, 12h, 10d, 2w)",
            )
    compiled = tuple(user_pattern(pattern) for pattern in patterns)
    return Rule(number, tuple(patterns), most_recent, within, text, node.line, compiled)


def _duration(text: str) -> float | None:
    """`10d`, `12h30m`, `2w`: a duration whose every number has a unit; None otherwise."""
    if not text or text[-1].lower() not in _DURATION_UNITS or not text[0].isdigit():
        return None
    try:
        return parse_duration(text, "pushed_within")
    except UsageError:
        return None
