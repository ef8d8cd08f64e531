"""prune on a v2 tree: gc's collector, with roots chosen by the retention policy.

For a repository a policy governs, the tags the policy does not keep are taken out of the
scan before roots are chosen, as if they were already deleted; the manifests they alone
reached are then not kept (`retained`, the one reachability rule gc and rm use), and with
`untagged: delete` neither are manifests no remaining tag reaches (gc's --delete-untagged,
grace included). Everything after that (marking, the sweep of blobs, layer links and
emptied repositories) is gc's own, so the plan is what gc would plan on the tree after the
removals. Other repositories are collected exactly as plain gc does (every revision kept).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from regtool.layout.v2 import paths
from regtool.layout.v2.reader import V2Reader
from regtool.model.policy import Policies, TagTime, decide
from regtool.model.references import Node, retained
from regtool.ops.gc import GcEntry, GcOptions, GcPlan
from regtool.ops.gc_v2 import V2Collector
from regtool.ops.gc_v2_sweep import RepoState

BROKEN = "unreadable tag link: left alone"
MOVED = "moved since the plan was shown: left alone"


@dataclass(frozen=True, slots=True)
class RepoOutcome:
    """What the policy decided for one governed repository."""

    repository: str
    policy: int  # 1-based number of the governing policy
    policy_line: int
    allow_empty: bool
    removed: tuple[tuple[str, str], ...]  # (tag, digest it names)
    kept: tuple[tuple[str, str], ...]  # (tag, the rule that keeps it)
    dropped: tuple[str, ...]  # manifests no longer kept
    dropped_blobs: tuple[str, ...]  # what the dropped manifests reference, themselves too
    kept_bytes: int  # descriptor sizes of the distinct blobs the kept manifests reference


class PruneCollector(V2Collector):
    push_times = True  # a tag's push time is its link's mtime, read with the link

    def __init__(
        self,
        reader: V2Reader,
        options: GcOptions,
        now: float,
        exact: bool,
        policies: Policies,
        pinned: frozenset[tuple[str, str]] = frozenset(),
    ) -> None:
        super().__init__(reader, options, now, exact)
        self.policies = policies
        self.pinned = pinned
        self.decided: list[RepoOutcome] = []
        self._removed_by_repository: dict[str, frozenset[str]] = {}
        self._gone_tags: frozenset[str] = frozenset()

    def spawn(self, reader: V2Reader | None = None) -> V2Collector:
        return PruneCollector(
            reader or self.reader, self.options, self.now, self.exact, self.policies, self.pinned
        )

    def outcomes(self) -> tuple[object, ...]:
        return tuple(self.decided)

    def absorb(self, outcomes: tuple[object, ...]) -> None:
        self.decided.extend(o for o in outcomes if isinstance(o, RepoOutcome))

    def choose_roots(self, state: RepoState) -> None:
        policy = self.policies.governing(state.name)
        if policy is None:
            super().choose_roots(state)  # plain gc: every revision and tag is a root
            return
        times = []
        for tag in sorted(state.tags):
            times.append(TagTime(tag, state.pushed.get(tag, 0.0)))
        verdict = decide(policy, times, self.now)
        kept: dict[str, str] = {}
        removed: dict[str, str] = {}
        for tag, rule in verdict.items():
            if rule is None and (state.name, tag) in self.pinned:
                rule = MOVED
            if rule is None:
                removed[tag] = state.tags.pop(tag)
                state.tag_folders.remove(tag)
            else:
                kept[tag] = rule
        for tag in state.tag_folders:
            kept.setdefault(tag, BROKEN)
        roots = set(state.tags.values())
        if policy.untagged == "keep":
            gone = set(removed.values())
            roots |= {digest for digest in state.revisions if digest not in gone}
        else:
            for digest, link in state.revisions.items():
                if digest in roots:
                    continue
                if self.recent(link) or self.recent(paths.blob_data(digest)):
                    roots.add(digest)
                    self.kept_recent += 1

        def load(digest: str) -> Node | None:
            return self.node(digest, f"in {state.name}")

        reach = retained(roots, state.revisions, load)
        state.keep = reach
        state.dropped = sorted(d for d in state.revisions if d not in reach)
        self.decided.append(
            RepoOutcome(
                state.name,
                policy.number,
                policy.line,
                policy.allow_empty,
                tuple(sorted(removed.items())),
                tuple(sorted(kept.items())),
                tuple(state.dropped),
                self._blobs_of(state.dropped),
                self._bytes_of(reach),
            )
        )

    def sweep_repository(self, state: RepoState, uploads_gone: int) -> GcEntry | None:
        """gc's sweep of an emptied repository, its removed tags counted as gone."""
        if len(self._removed_by_repository) != len(self.decided):
            self._removed_by_repository = {
                o.repository: frozenset(tag for tag, _ in o.removed) for o in self.decided
            }
        self._gone_tags = self._removed_by_repository.get(state.name, frozenset())
        try:
            return super().sweep_repository(state, uploads_gone)
        finally:
            self._gone_tags = frozenset()

    def in_repository(self, marker: str) -> Callable[[str], bool]:  # type: ignore[override]
        allowed = V2Collector.in_repository(marker)
        gone = self._gone_tags
        if marker != paths.MANIFESTS or not gone:
            return allowed

        def allowed_or_removed(relative: str) -> bool:
            parts = relative.split("/")
            if len(parts) >= 3 and parts[0] == paths.TAGS and parts[1] in gone:
                return parts[-1] == paths.LINK or paths.TEMP_FILE.fullmatch(parts[-1]) is not None
            return allowed(relative)

        return allowed_or_removed

    def _blobs_of(self, manifests: list[str]) -> tuple[str, ...]:
        found: set[str] = set(manifests)
        for digest in manifests:
            node = self.nodes.get(digest)
            if node is not None:
                found.update(node.blobs)
        return tuple(sorted(found))

    def _bytes_of(self, manifests: set[str]) -> int:
        sizes: dict[str, int] = {}
        for digest in manifests:
            node = self.nodes.get(digest)
            if node is not None:
                sizes.update(zip(node.blobs, node.sizes, strict=False))
        return sum(sizes.values())


def plan_prune_v2(
    reader: V2Reader,
    policies: Policies,
    options: GcOptions,
    now: float,
    exact: bool = False,
    pinned: frozenset[tuple[str, str]] = frozenset(),
) -> tuple[GcPlan, tuple[RepoOutcome, ...]]:
    """gc's plan on the tree as the policies leave it, and what they decided per repository."""
    collector = PruneCollector(reader, options, now, exact, policies, pinned)
    plan = collector.plan()
    outcomes = tuple(sorted(collector.decided, key=lambda outcome: outcome.repository))
    return plan, outcomes
