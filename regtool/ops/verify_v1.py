"""`verify` on a legacy v1 tree: payload checksums, tarsum, ancestry, tags and leftovers."""

from __future__ import annotations

from dataclasses import dataclass, field

from regtool.layout.v1 import paths
from regtool.layout.v1.reader import MAX_CHAIN, V1Reader
from regtool.model.config import MAX_CONFIG_BYTES, ConfigError, V1Image, parse_v1_json
from regtool.model.digest import is_v1_id, short
from regtool.model.jsondoc import JsonError, parse_json
from regtool.model.tarsum import PREFIX as TARSUM_PREFIX
from regtool.ops.verify import (
    Checked,
    Findings,
    HashJob,
    HashResult,
    Options,
    VerifyReport,
    hash_all,
)
from regtool.storage.driver import ForeignObjectError, PathNotFound, StorageError

SIMPLE_PREFIX = "sha256:"


@dataclass(slots=True)
class _Image:
    """What was read of one image folder."""

    id: str
    json_bytes: bytes | None = None
    json: V1Image | None = None
    layer_size: int | None = None
    in_progress: bool = False
    missing: list[str] = field(default_factory=list)
    simple: list[str] = field(default_factory=list)
    tarsums: list[str] = field(default_factory=list)


class _V1Check:
    def __init__(self, reader: V1Reader, options: Options) -> None:
        self.reader = reader
        self.driver = reader.driver
        self.options = options
        self.found = Findings()
        self.images: dict[str, _Image] = {}
        self.reached: dict[str, str] = {}  # image id -> first tag whose chain holds it
        self.counts = {"repositories": 0, "tags": 0, "links": 0}

    # -- images --------------------------------------------------------------------------
    def scan_images(self) -> None:
        try:
            entries = self.driver.list(paths.IMAGES)
        except StorageError as exc:
            self.found.add("unreadable-file", "error", paths.IMAGES, paths.IMAGES, exc.message)
            return
        for entry in entries:
            path = paths.image_dir(entry.name)
            if entry.foreign is not None:
                self.found.foreign(path, entry.foreign, entry.name)
                continue
            if not entry.is_dir or not is_v1_id(entry.name):
                what = "folder" if entry.is_dir else "file"
                self.found.add(
                    "junk-file", "warning", entry.name, path, f"unexpected {what} among images"
                )
                continue
            self.images[entry.name] = self._read_image(entry.name)

    def _read_image(self, image_id: str) -> _Image:
        image = _Image(image_id)
        json_path = paths.image_json(image_id)
        try:
            image.json_bytes = self.driver.get(json_path, MAX_CONFIG_BYTES)
        except PathNotFound:
            image.missing.append("json")
        except ForeignObjectError as exc:
            self.found.foreign(exc.foreign, exc.what, image_id)
        except StorageError as exc:
            self.found.add("unreadable-file", "error", image_id, json_path, exc.message)
        if image.json_bytes is not None:
            try:
                image.json = parse_v1_json(image.json_bytes)
            except ConfigError as exc:
                self.found.add("unreadable-manifest", "error", image_id, json_path, str(exc))
            if image.json is not None and image.json.id != image_id:
                self.found.add(
                    "unreadable-manifest",
                    "error",
                    image_id,
                    json_path,
                    f"json id {short(image.json.id)} differs from the folder name",
                )
        layer_path = paths.image_layer(image_id)
        try:
            info = self.driver.stat(layer_path)
            if info.is_dir:
                self.found.add("unreadable-file", "error", image_id, layer_path, "is a folder")
            else:
                image.layer_size = info.size
        except PathNotFound:
            image.missing.append("layer")
        except ForeignObjectError as exc:
            self.found.foreign(exc.foreign, exc.what, image_id)
        except StorageError as exc:
            self.found.add("unreadable-file", "error", image_id, layer_path, exc.message)
        image.in_progress = self.driver.exists(paths.image_inprogress(image_id))
        self._read_checksum(image)
        return image

    def _read_checksum(self, image: _Image) -> None:
        path = paths.image_checksum(image.id)
        try:
            text = self.driver.get(path, MAX_CONFIG_BYTES).decode("utf-8", "replace").strip()
        except PathNotFound:
            return
        except StorageError as exc:
            self.found.add("unreadable-file", "error", image.id, path, exc.message)
            return
        try:
            doc = parse_json(text)
        except JsonError:
            doc = text  # 0.6-style plain string
        values = doc if isinstance(doc, list) else [doc]
        for value in values:
            if not isinstance(value, str):
                continue
            if value.startswith(TARSUM_PREFIX):
                image.tarsums.append(value)
            elif value.startswith(SIMPLE_PREFIX):
                image.simple.append(value)

    # -- tags and reachability -----------------------------------------------------------
    def check_tags(self) -> None:
        repositories = self.reader.repositories()
        for issue in self.reader.foreign_objects():
            self.found.foreign(issue.path, issue.message)
        for repo in repositories:
            self.counts["repositories"] += 1
            for tag in self.reader.tags(repo.name):
                self.counts["tags"] += 1
                self.counts["links"] += 1
                ref = f"{repo.name}:{tag.tag}"
                if tag.digest is None:
                    message = tag.issue.message if tag.issue else "unreadable tag file"
                    self.found.add("bad-link", "error", ref, tag.path, message)
                    continue
                if tag.digest not in self.images:
                    self.found.add(
                        "dangling-link",
                        "error",
                        tag.digest,
                        tag.path,
                        f"tag {ref} names an image that is not stored",
                    )
                    continue
                for image_id in self._chain(tag.digest):
                    self.reached.setdefault(image_id, ref)
                    if image_id not in self.images:
                        self.found.add(
                            "missing-image-file",
                            "error",
                            image_id,
                            paths.image_dir(image_id),
                            f"image folder missing; in the ancestry of tag {ref}",
                        )

    def _chain(self, image_id: str) -> tuple[str, ...]:
        ancestry = self._ancestry(image_id)
        if ancestry is not None and ancestry[0] == image_id:
            return ancestry
        return self._parents(image_id)[0]

    def _ancestry(self, image_id: str) -> tuple[str, ...] | None:
        try:
            doc = parse_json(self.driver.get(paths.image_ancestry(image_id), MAX_CONFIG_BYTES))
        except (StorageError, JsonError):
            return None
        if isinstance(doc, list) and doc and all(isinstance(i, str) and is_v1_id(i) for i in doc):
            return tuple(doc)
        return None

    def _parents(self, image_id: str) -> tuple[tuple[str, ...], bool]:
        """The json parent chain, and whether it reached a base image (False: cut short)."""
        chain = [image_id]
        current = self.images.get(image_id)
        while current is not None and current.json is not None and current.json.parent:
            parent = current.json.parent
            if parent in chain or len(chain) >= MAX_CHAIN:
                return tuple(chain), False
            chain.append(parent)
            current = self.images.get(parent)
        complete = current is not None and current.json is not None
        return tuple(chain), complete

    # -- per-image checks ----------------------------------------------------------------
    def check_images(self) -> list[HashJob]:
        jobs: list[HashJob] = []
        for image_id, image in sorted(self.images.items()):
            if image.in_progress:
                self._in_progress(image)
                continue
            for name in image.missing:
                path = paths.image_json(image_id) if name == "json" else paths.image_layer(image_id)
                self.found.add("missing-image-file", "error", image_id, path, f"no {name} file")
            if image.json is not None and image.json.parent:
                if image.json.parent not in self.images:
                    self.found.add(
                        "missing-image-file",
                        "error",
                        image.json.parent,
                        paths.image_dir(image.json.parent),
                        f"image folder missing; parent of {short(image_id)}",
                    )
            self._check_ancestry(image)
            if not image.simple and not image.tarsums:
                self.found.add(
                    "unverifiable-checksum",
                    "warning",
                    image_id,
                    paths.image_checksum(image_id),
                    "no sha256 or tarsum+sha256 checksum stored",
                )
            elif image.json_bytes is not None and image.layer_size is not None:
                jobs.extend(self._jobs(image))
        return jobs

    def _in_progress(self, image: _Image) -> None:
        tag = self.reached.get(image.id)
        detail = "push never finished"
        if image.missing:
            detail += "; no " + " or ".join(image.missing)
        if tag is not None:
            detail += f"; in the ancestry of tag {tag}"
        self.found.add(
            "inprogress-image",
            "error" if tag is not None else "warning",
            image.id,
            paths.image_inprogress(image.id),
            detail,
        )

    def _check_ancestry(self, image: _Image) -> None:
        path = paths.image_ancestry(image.id)
        try:
            raw = self.driver.get(path, MAX_CONFIG_BYTES)
        except PathNotFound:
            self.found.add("missing-image-file", "error", image.id, path, "no ancestry file")
            return
        except StorageError as exc:
            self.found.add("unreadable-file", "error", image.id, path, exc.message)
            return
        ancestry = self._ancestry(image.id)
        if ancestry is None or ancestry[0] != image.id:
            detail = "not a JSON list of image ids starting with the image itself"
            self.found.add("ancestry-mismatch", "error", image.id, path, f"{detail}: {raw[:60]!r}")
            return
        chain, complete = self._parents(image.id)
        # a chain cut short (a parent without readable json) is compared as a prefix only
        listed = ancestry if complete else ancestry[: len(chain)]
        if listed == chain:
            return
        at = next(
            (i for i, (a, b) in enumerate(zip(listed, chain, strict=False)) if a != b),
            min(len(listed), len(chain)),
        )
        said = short(listed[at]) if at < len(listed) else "nothing"
        parent = short(chain[at]) if at < len(chain) else "nothing"
        self.found.add(
            "ancestry-mismatch",
            "error",
            image.id,
            path,
            f"entry {at} is {said}, the json parent chain says {parent}",
        )

    def _jobs(self, image: _Image) -> list[HashJob]:
        assert image.json_bytes is not None and image.layer_size is not None
        layer = paths.image_layer(image.id)
        jobs = []
        if image.simple:
            jobs.append(HashJob(image.id, layer, image.layer_size, prefix=image.json_bytes + b"\n"))
        if image.tarsums:
            jobs.append(
                HashJob(image.id, layer, image.layer_size, prefix=image.json_bytes, tarsum=True)
            )
        return jobs

    def report_hashes(self, results: list[HashResult]) -> None:
        for result in results:
            image = self.images[result.job.key]
            path = result.job.path
            if result.job.tarsum:
                if result.value not in image.tarsums:
                    got = result.error or f"the layer's tarsum is {result.value}"
                    self.found.add(
                        "tarsum-mismatch",
                        "warning",
                        image.id,
                        path,
                        f"{got}; _checksum has {', '.join(image.tarsums)}",
                    )
            elif result.error is not None:
                self.found.add("unreadable-file", "error", image.id, path, result.error)
            elif result.value not in image.simple:
                self.found.add(
                    "digest-mismatch",
                    "error",
                    image.id,
                    path,
                    f"sha256(json + newline + layer) is {result.value}; "
                    f"_checksum has {', '.join(image.simple)}",
                )


def verify_v1(reader: V1Reader, options: Options) -> VerifyReport:
    check = _V1Check(reader, options)
    check.scan_images()
    check.check_tags()
    jobs = check.check_images()
    hashed = 0
    if not options.quick:
        check.report_hashes(hash_all(check.driver, jobs, options.jobs, options.progress))
        hashed = sum(job.size for job in jobs if not job.tarsum)
    checked = Checked(
        layout="v1",
        repositories=check.counts["repositories"],
        tags=check.counts["tags"],
        links=check.counts["links"],
        blobs=sum(1 for image in check.images.values() if image.layer_size is not None),
        bytes=hashed,
        images=len(check.images),
    )
    return VerifyReport(checked, check.found.sorted())
