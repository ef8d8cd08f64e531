"""Every path of distribution's v2 layout, relative to the storage root (registry/storage/paths.go).

docker/registry/v2/
  blobs/<alg>/<hh>/<hex>/data
  repositories/<name>/
    _layers/<alg>/<hex>/link
    _manifests/revisions/<alg>/<hex>/link
    _manifests/tags/<tag>/current/link
    _manifests/tags/<tag>/index/<alg>/<hex>/link
    _uploads/<uuid>/{data,startedat,hashstates/<alg>/<offset>}
"""

from __future__ import annotations

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


def is_repository_marker(entry_name: str) -> bool:
    """A folder holding `_layers` (2.8.2) or `_manifests` (3.x) is a repository."""
    return entry_name in (LAYERS, MANIFESTS)
