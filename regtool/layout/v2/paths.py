"""Every path of distribution's v2 layout, relative to the storage root (registry/storage/paths.go).

docker/registry/v2/
  blobs/<alg>/<hh>/<hex>/data
  repositories/<name>/
    _layers/<alg>/<hex>/link
    _manifests/revisions/<alg>/<hex>/link
    _manifests/tags/<tag>/current/link
    _manifests/tags/<tag>/index/<alg>/<hex>/link
    _uploads/<uuid>/{data,startedat,hashstates/<alg>/<offset>}
    _uploads/<uuid>/chunks/<offset, 20 digits>   (regtool serve on an object store)
"""

from __future__ import annotations

import re

from regtool.model.digest import split_digest

V2 = "docker/registry/v2"
BLOBS = f"{V2}/blobs"
REPOSITORIES = f"{V2}/repositories"
LAYERS = "_layers"
MANIFESTS = "_manifests"
UPLOADS = "_uploads"
LINK = "link"
DATA = "data"
STARTEDAT = "startedat"
HASHSTATES = "hashstates"
CHUNKS = "chunks"  # an object-store session's PATCH bodies, one object each
CHUNK_DIGITS = 20
SIGNATURES = "signatures"  # schema1 signature links of registry <= 2.3
TAGS = "tags"
TAG_INDEX = "index"
# A write in progress: `<name>.<uuid>.tmp` beside the file it replaces (distribution 3.1+
# and regtool's own filesystem driver write one, then rename it over `<name>`).
TEMP_FILE = re.compile(r"(?:data|link|startedat)\.[0-9a-fA-F-]{8,40}\.tmp")


def blob_dir(digest: str) -> str:
    algorithm, hexpart = split_digest(digest)
    return f"{BLOBS}/{algorithm}/{hexpart[:2]}/{hexpart}"


def blob_data(digest: str) -> str:
    return f"{blob_dir(digest)}/{DATA}"


def blob_algorithms() -> str:
    return BLOBS


def repository(name: str) -> str:
    return f"{REPOSITORIES}/{name}"


def layers_dir(name: str) -> str:
    return f"{REPOSITORIES}/{name}/{LAYERS}"


def layer_link(name: str, digest: str) -> str:
    algorithm, hexpart = split_digest(digest)
    return f"{REPOSITORIES}/{name}/{LAYERS}/{algorithm}/{hexpart}/{LINK}"


def manifests_dir(name: str) -> str:
    return f"{REPOSITORIES}/{name}/{MANIFESTS}"


def revisions_dir(name: str) -> str:
    return f"{REPOSITORIES}/{name}/{MANIFESTS}/revisions"


def revision_link(name: str, digest: str) -> str:
    algorithm, hexpart = split_digest(digest)
    return f"{REPOSITORIES}/{name}/{MANIFESTS}/revisions/{algorithm}/{hexpart}/{LINK}"


def tags_dir(name: str) -> str:
    return f"{REPOSITORIES}/{name}/{MANIFESTS}/tags"


def tag_dir(name: str, tag: str) -> str:
    return f"{REPOSITORIES}/{name}/{MANIFESTS}/tags/{tag}"


def tag_current_link(name: str, tag: str) -> str:
    return f"{REPOSITORIES}/{name}/{MANIFESTS}/tags/{tag}/current/{LINK}"


def tag_index_dir(name: str, tag: str) -> str:
    return f"{REPOSITORIES}/{name}/{MANIFESTS}/tags/{tag}/index"


def tag_index_link(name: str, tag: str, digest: str) -> str:
    algorithm, hexpart = split_digest(digest)
    return f"{REPOSITORIES}/{name}/{MANIFESTS}/tags/{tag}/index/{algorithm}/{hexpart}/{LINK}"


def uploads_dir(name: str) -> str:
    return f"{REPOSITORIES}/{name}/{UPLOADS}"


def upload_dir(name: str, upload_id: str) -> str:
    return f"{REPOSITORIES}/{name}/{UPLOADS}/{upload_id}"


def upload_data(name: str, upload_id: str) -> str:
    return f"{REPOSITORIES}/{name}/{UPLOADS}/{upload_id}/{DATA}"


def upload_startedat(name: str, upload_id: str) -> str:
    return f"{REPOSITORIES}/{name}/{UPLOADS}/{upload_id}/{STARTEDAT}"


def upload_chunks_dir(name: str, upload_id: str) -> str:
    return f"{REPOSITORIES}/{name}/{UPLOADS}/{upload_id}/{CHUNKS}"


def upload_chunk(name: str, upload_id: str, offset: int) -> str:
    """The object holding the session's bytes from `offset` (zero-padded, so key order is
    byte order)."""
    return f"{upload_chunks_dir(name, upload_id)}/{offset:0{CHUNK_DIGITS}d}"


def chunk_offset(key_name: str) -> int | None:
    """The offset a chunk object's name gives, or None when it is not one."""
    if len(key_name) == CHUNK_DIGITS and key_name.isascii() and key_name.isdigit():
        return int(key_name)
    return None


def repository_of(key: str) -> str | None:
    """The repository a key under `repositories/` belongs to (its folders before the first
    `_layers`/`_manifests`/`_uploads`), or None for a key outside them (blobs)."""
    prefix = f"{REPOSITORIES}/"
    if not key.startswith(prefix):
        return None
    name: list[str] = []
    for part in key[len(prefix) :].split("/"):
        if part.startswith("_"):
            break
        name.append(part)
    return "/".join(name) or None


def is_repository_marker(entry_name: str) -> bool:
    """A folder holding `_layers` (2.8.2) or `_manifests` (3.x) is a repository."""
    return entry_name in (LAYERS, MANIFESTS)


# -- what a repository folder may hold (gc deletes nothing else) ---------------------------
_HEX = "0123456789abcdef"
_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_DIGEST_DIRS = r"(?:sha256/[0-9a-f]{64}|sha384/[0-9a-f]{96}|sha512/[0-9a-f]{128})"
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_LINK_OR_TEMP = rf"(?:{LINK}|{TEMP_FILE.pattern})"
_HASHSTATE = rf"{HASHSTATES}/(?:sha256|sha384|sha512)/[0-9]{{1,20}}"
_CHUNK = rf"{CHUNKS}/[0-9]{{{CHUNK_DIGITS}}}"
_UPLOAD_FILE = rf"(?:{DATA}|{STARTEDAT}|{TEMP_FILE.pattern}|{_HASHSTATE}|{_CHUNK})"
_REVISION_FILE = rf"(?:{_LINK_OR_TEMP}|{SIGNATURES}/{_DIGEST_DIRS}/{LINK})"
_UPLOAD_ID = re.compile(_UUID)
_UPLOAD_FILE_RE = re.compile(_UPLOAD_FILE)
_LINK_FOLDER_FILE = re.compile(_LINK_OR_TEMP)
_REVISION_FOLDER_FILE = re.compile(_REVISION_FILE)
_REPOSITORY_FILE = re.compile(
    rf"{LAYERS}/{_DIGEST_DIRS}/{_LINK_OR_TEMP}"
    rf"|{MANIFESTS}/revisions/{_DIGEST_DIRS}/{_REVISION_FILE}"
    rf"|{UPLOADS}/{_UUID}/{_UPLOAD_FILE}"
)


def is_digest_folder(algorithm: str, name: str) -> bool:
    """`<alg>/<hex>` folder names of links and blobs: a known algorithm, lower-case hex."""
    length = _HEX_LENGTHS.get(algorithm)
    return length is not None and len(name) == length and not name.strip(_HEX)


def is_upload_id(name: str) -> bool:
    """Upload folders are named by a UUID (distribution and regtool alike)."""
    return _UPLOAD_ID.fullmatch(name) is not None


def is_upload_file(relative: str) -> bool:
    """`data`, `startedat`, `hashstates/<alg>/<offset>`, `chunks/<offset>` or a temp file,
    below an upload."""
    return _UPLOAD_FILE_RE.fullmatch(relative) is not None


def is_link_folder_file(name: str) -> bool:
    """`link` or its temp file: what a layer link or tag index entry folder holds."""
    return _LINK_FOLDER_FILE.fullmatch(name) is not None


def is_revision_folder_file(relative: str) -> bool:
    """What a revision folder holds: its link, a temp file, schema1 signature links."""
    return _REVISION_FOLDER_FILE.fullmatch(relative) is not None


def is_repository_file(relative: str) -> bool:
    """A file below a repository folder (path relative to it) that the layout writes
    outside of tags: links, signature links, uploads and their temp files."""
    return _REPOSITORY_FILE.fullmatch(relative) is not None


def in_layers(key: str) -> bool:
    """Whether `key` lies in a repository's `_layers` folder (a layer link or its folder)."""
    return key.startswith(REPOSITORIES + "/") and f"/{LAYERS}/" in key


def may_hold_tags(key: str) -> bool:
    """Whether a folder (or a link in its place) at `key` may hold repositories, tags or
    revisions: anything below `repositories/` except `_layers`, `_uploads` and a tag's
    `index` history."""
    if not key.startswith(REPOSITORIES + "/"):
        return False
    parts = key[len(REPOSITORIES) + 1 :].split("/")
    for i, part in enumerate(parts):
        if part in (LAYERS, UPLOADS):
            return False
        if part == MANIFESTS:
            rest = parts[i + 1 :]
            return not (len(rest) >= 3 and rest[0] == TAGS and rest[2] == TAG_INDEX)
    return True
