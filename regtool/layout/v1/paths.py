"""Every path of the legacy docker-registry 0.x layout, relative to its storage_path.

images/<id>/{json,layer,ancestry,_checksum,_inprogress,_files,_diff}
repositories/<namespace>/<repo>/{tag_<t>,tag<t>_json,json,_index_images,_private}
"""

from __future__ import annotations

IMAGES = "images"
REPOSITORIES = "repositories"
TAG_PREFIX = "tag_"
LIBRARY = "library"


def image_dir(image_id: str) -> str:
    return f"{IMAGES}/{image_id}"


def image_json(image_id: str) -> str:
    return f"{IMAGES}/{image_id}/json"


def image_layer(image_id: str) -> str:
    return f"{IMAGES}/{image_id}/layer"


def image_ancestry(image_id: str) -> str:
    return f"{IMAGES}/{image_id}/ancestry"


def image_checksum(image_id: str) -> str:
    return f"{IMAGES}/{image_id}/_checksum"


def image_inprogress(image_id: str) -> str:
    return f"{IMAGES}/{image_id}/_inprogress"


IMAGE_FILES = frozenset(
    {"json", "layer", "ancestry", "_checksum", "_inprogress", "_files", "_diff"}
)


def is_image_file(relative: str) -> bool:
    """A file an image folder holds (path relative to the folder), in any registry version."""
    return relative in IMAGE_FILES


def namespace_dir(namespace: str) -> str:
    return f"{REPOSITORIES}/{namespace}"


def repository_dir(name: str) -> str:
    return f"{REPOSITORIES}/{name}"


def tag_file(name: str, tag: str) -> str:
    return f"{REPOSITORIES}/{name}/{TAG_PREFIX}{tag}"


def tag_json(name: str, tag: str) -> str:
    return f"{REPOSITORIES}/{name}/tag{tag}_json"


def repository_json(name: str) -> str:
    return f"{REPOSITORIES}/{name}/json"


def index_images(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_index_images"


def tag_name(file_name: str) -> str | None:
    """The tag a `tag_<t>` file stands for, or None for any other file."""
    return file_name[len(TAG_PREFIX) :] if file_name.startswith(TAG_PREFIX) else None
