"""HEAD/GET/PUT/DELETE of `/v2/<name>/manifests/<tag or digest>`."""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

from regtool.layout.v2 import paths
from regtool.model import mediatype as mt
from regtool.model.digest import split_digest
from regtool.model.manifest import (
    MAX_MANIFEST_BYTES,
    Descriptor,
    ImageIndex,
    ImageManifest,
    Manifest,
    ManifestError,
    Schema1Manifest,
    parse_manifest,
)
from regtool.model.reference import valid_tag
from regtool.model.references import may_be_absent
from regtool.server.handlers.context import V1_HINT, Context
from regtool.server.http import ApiError, Request, Response, empty

# what 2.8.2 answers when an OCI manifest is asked for without accepting its type
_NOT_ACCEPTED = {
    mt.OCI_MANIFEST: "OCI manifest found, but accept header does not support OCI manifests",
    mt.OCI_INDEX: "OCI index found, but accept header does not support OCI indexes",
}


def _is_digest(ref: str) -> bool:
    return ":" in ref


def _resolve(ctx: Context, name: str, ref: str) -> str:
    """The digest a tag or digest reference names in this repository."""
    if ctx.layout == "v1":
        raise ApiError("NAME_UNKNOWN", V1_HINT, detail={"name": name})
    if _is_digest(ref):
        digest = ctx.check_digest(ref)
        if ctx.has_manifest(name, digest):
            return digest
    elif valid_tag(ref):  # a tag that cannot exist is not there: 404, as for any other
        found = ctx.tag_digest(name, ref)
        if found is not None:
            return found
    if not ctx.repository_exists(name):
        raise ApiError("NAME_UNKNOWN", detail={"name": name})
    raise ApiError("MANIFEST_UNKNOWN", detail={"reference": ref[:200]})


def get_manifest(ctx: Context, req: Request, name: str, ref: str) -> Response:
    digest = _resolve(ctx, name, ref)
    stored = ctx.manifest(digest)
    if stored is None:
        raise ApiError("MANIFEST_UNKNOWN", detail={"reference": ref})
    raw, media_type = stored
    refusal = _NOT_ACCEPTED.get(media_type)
    if refusal is not None and not _accepts(req.headers.get("accept"), media_type):
        raise ApiError("MANIFEST_UNKNOWN", refusal)
    headers = {
        "Content-Type": media_type,
        "Docker-Content-Digest": digest,
        "ETag": f'"{digest}"',
    }
    if req.method == "HEAD":
        headers["Content-Length"] = str(len(raw))
        return Response(200, headers)
    return Response(200, headers, raw)


def _accepts(accept: str | None, media_type: str) -> bool:
    """No Accept header is lenient (any type); otherwise the type (or */*) must be listed."""
    if not accept:
        return True
    for item in accept.split(","):
        kind = item.split(";", 1)[0].strip()
        if kind == media_type or kind == "*/*":
            return True
    return False


def put_manifest(ctx: Context, req: Request, name: str, ref: str) -> Response:
    ctx.check_writable()
    tag = None if _is_digest(ref) else ctx.check_tag(ref)
    expected = ctx.check_digest(ref) if tag is None else None
    raw = req.body.read_all(MAX_MANIFEST_BYTES)
    manifest = _parse(raw, req.header("content-type"))
    algorithm = split_digest(expected)[0] if expected else "sha256"
    actual = f"{algorithm}:{hashlib.new(algorithm, raw).hexdigest()}"
    if expected is not None and actual != expected:
        raise ApiError("DIGEST_INVALID", detail={"expected": expected, "actual": actual})
    with ctx.writing():
        # recorded first: a background gc deleting under its lock now spares all of it
        references = [d.digest for d in manifest.references()]
        ctx.activity.touch(name, [actual, *references, *_subject(manifest)])
        _check_references(ctx, name, manifest)
        digest = ctx.writer.put_manifest(name, raw, tag)
        if not ctx.present(paths.layers_dir(name)):
            # a repository must have `_layers` or 2.8.2 neither lists it nor marks its blobs
            # in gc (only a manifest naming no blob at all, like an empty index, gets here)
            ctx.writer.link_blob(name, digest)
        ctx.forget_tags(name)
    ctx.remember_manifest(digest, raw)
    ctx.changed()
    headers = {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest}
    if manifest.subject is not None:
        headers["OCI-Subject"] = manifest.subject.digest
    return empty(201, headers)


def _subject(manifest: ImageManifest | ImageIndex) -> list[str]:
    return [manifest.subject.digest] if manifest.subject is not None else []


def _parse(raw: bytes, content_type: str) -> ImageManifest | ImageIndex:
    try:
        manifest: Manifest = parse_manifest(raw)
    except ManifestError as exc:
        raise ApiError("MANIFEST_INVALID", str(exc)) from None
    if isinstance(manifest, Schema1Manifest):
        raise ApiError(
            "MANIFEST_INVALID", "schema1 manifests are not accepted; push schema2 or OCI"
        )
    declared = content_type.split(";", 1)[0].strip()
    if mt.is_manifest(declared) and declared != manifest.media_type:
        raise ApiError(
            "MANIFEST_INVALID",
            f"Content-Type {declared} does not match the manifest's {manifest.media_type}",
        )
    return manifest


def _check_references(ctx: Context, name: str, manifest: ImageManifest | ImageIndex) -> None:
    """Every descriptor names an object of this repository of exactly its size: index
    children stored as its manifests, config and layers linked in it. Only a foreign
    (non-distributable) layer with http(s) URLs may be absent: clients fetch it there."""
    if isinstance(manifest, ImageIndex):
        for child in manifest.references():
            if not ctx.has_manifest(name, child.digest):
                raise ApiError("MANIFEST_BLOB_UNKNOWN", detail={"digest": child.digest})
            _check_size(ctx, child)
        return
    for blob in manifest.references():
        if _fetched_from_urls(blob):
            continue
        if not ctx.blob_linked(name, blob.digest):
            raise ApiError("MANIFEST_BLOB_UNKNOWN", detail={"digest": blob.digest})
        _check_size(ctx, blob)


def _check_size(ctx: Context, descriptor: Descriptor) -> None:
    """The stored blob must have the size the descriptor declares (a wrong size would
    inflate what `ls` counts and fail `verify`); 2.8.2 does not check this."""
    stored = ctx.writer.blob_size(descriptor.digest)
    if stored is None:
        raise ApiError("MANIFEST_BLOB_UNKNOWN", detail={"digest": descriptor.digest})
    if stored != descriptor.size:
        raise ApiError(
            "MANIFEST_INVALID",
            f"SIZE_INVALID: descriptor size {descriptor.size} of {descriptor.digest} "
            f"does not match the stored blob ({stored} bytes)",
            detail={"digest": descriptor.digest, "size": descriptor.size, "stored": stored},
        )


def _fetched_from_urls(descriptor: Descriptor) -> bool:
    """A foreign layer with URLs need not be stored; its URLs must be http or https (a
    `file://` URL would point clients at their own disk). URLs on any other descriptor
    are ignored: the blob must be here."""
    if not may_be_absent(descriptor):
        return False
    for url in descriptor.urls:
        try:
            parts = urlsplit(url)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ApiError(
                "MANIFEST_INVALID",
                "foreign layer URLs must be http or https",
                detail={"digest": descriptor.digest, "url": url[:200]},
            )
    return True


def delete_manifest(ctx: Context, req: Request, name: str, ref: str) -> Response:
    with ctx.writing(deleting=True):
        if _is_digest(ref):
            digest = ctx.check_digest(ref)
            if not ctx.has_manifest(name, digest):
                raise ApiError("MANIFEST_UNKNOWN", detail={"digest": digest})
            tags = [t.tag for t in ctx.v2.tags(name) if t.digest == digest]
            ctx.writer.delete_manifest(name, digest, tags)
            if ctx.blob_linked(name, digest):  # registry 2.1 linked manifests there too
                ctx.writer.unlink_blob(name, digest)
        else:
            tag = ctx.check_tag(ref)
            if ctx.tag_digest(name, tag) is None:
                raise ApiError("MANIFEST_UNKNOWN", detail={"tag": tag})
            ctx.writer.untag(name, tag)
        ctx.forget_tags(name)
    ctx.changed()
    return empty(202)
