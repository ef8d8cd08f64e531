"""gc on a legacy v1 tree: keep every image in the ancestry of a tag, sweep the other images.

Roots are the `tag_*` files only (`_index_images` only ever grows, so it proves nothing).
An image's needs are the union of its `ancestry` file and its json `parent` chain; when a
tagged image's chain cannot be followed to its base, liveness cannot be proven and the plan
is refused. Images younger than the grace window (any file in the folder, or the folder
itself) are kept, which covers `_inprogress` pushes.
"""

from __future__ import annotations

from regtool.layout.reader import Issue
from regtool.layout.v1 import paths
from regtool.layout.v1.reader import V1Reader
from regtool.model.digest import is_v1_id
from regtool.ops.gc import GcEntry, GcOptions, GcPlan, judge_foreign
from regtool.storage.driver import ForeignObjectError, StorageError


def live_images(reader: V1Reader) -> tuple[set[str], dict[str, Issue]]:
    """Every image a tag needs, and the problems that make the set unprovable."""
    live: set[str] = set()
    problems: dict[str, Issue] = {}
    for repository in reader.repositories():
        for link in reader.tags(repository.name):
            label = f"{repository.name}:{link.tag}"
            if link.digest is None:
                issue = link.issue or Issue(link.path, "unreadable tag")
                problems.setdefault(link.path, Issue(link.path, f"tag {label}: {issue.message}"))
                continue
            if link.digest in live:
                continue
            chain, _ = reader.chain(link.digest)
            needed = set(chain) | set(reader.parent_chain(link.digest))
            for image_id in sorted(needed):
                info = reader.image(image_id)
                if info.json is None:
                    path = paths.image_json(image_id)
                    problems.setdefault(
                        path,
                        Issue(
                            path,
                            f"image {image_id[:12]} in the chain of {label} has no readable "
                            "json: what the tag needs cannot be proven",
                        ),
                    )
            live |= needed
    return live, problems


def plan_v1(reader: V1Reader, options: GcOptions, now: float) -> GcPlan:
    live, problems = live_images(reader)
    cutoff = now - options.grace if options.grace > 0 else None
    driver = reader.driver
    delete: list[GcEntry] = []
    warnings: list[Issue] = []
    skipped: list[Issue] = []
    foreign = {issue.path: issue.message for issue in reader.foreign_objects()}
    kept_recent = 0
    try:
        entries = driver.list(paths.IMAGES)
    except ForeignObjectError as exc:
        foreign[exc.foreign] = exc.what
        entries = []
    for entry in entries:
        if entry.foreign is not None:
            foreign[paths.image_dir(entry.name)] = entry.foreign
            continue
        if not entry.is_dir:
            continue
        if not is_v1_id(entry.name):
            warnings.append(Issue(paths.image_dir(entry.name), "not an image id: left alone"))
            continue
        if entry.name in live:
            continue
        folder = paths.image_dir(entry.name)
        try:
            newest = driver.stat(folder).mtime
        except StorageError:
            continue
        size = 0
        for info in driver.walk(folder):
            name = info.path[len(folder) + 1 :]
            if info.foreign is not None:
                foreign[info.path] = info.foreign  # listed as skipped, with the reason
                break
            if not paths.is_image_file(name):
                reason = f"image folder holds {name}, not part of the layout: left alone"
                skipped.append(Issue(folder, reason))
                break
            size += info.size
            newest = max(newest, info.mtime)
        else:
            if cutoff is not None and newest >= cutoff:
                kept_recent += 1
                continue
            delete.append(GcEntry("image", entry.name, size, folder))
    refusals, left = judge_foreign(driver, foreign, _may_hold_tags, paths.REPOSITORIES)
    for issue in refusals:
        problems.setdefault(issue.path, issue)
    return GcPlan(
        layout="v1",
        delete=tuple(delete),
        problems=tuple(sorted(problems.values(), key=lambda issue: issue.path)),
        warnings=tuple(warnings),
        marked=len(live),
        kept_recent=kept_recent,
        forced=options.force,
        skipped=tuple(sorted([*left, *skipped], key=lambda issue: issue.path)),
    )


def _may_hold_tags(key: str) -> bool:
    return key.startswith(paths.REPOSITORIES + "/")
