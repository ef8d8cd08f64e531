"""A v1 json `parent` that is no image id (`../../x`) is never followed as a path."""

from __future__ import annotations

from pathlib import Path

from regtool.layout.detect import open_reader
from regtool.ops.ls import list_tags
from tests.support.v1tree import compress, image_id, make_tar, write_image, write_tag


def test_a_parent_like_a_path_ends_the_chain_and_ls_lists_every_tag(tmp_path: Path):
    bad, good = image_id("bad"), image_id("good")
    write_image(tmp_path, bad, "../../x", compress(make_tar({"b": b"b"}), "gzip"))
    write_image(tmp_path, good, None, compress(make_tar({"g": b"g"}), "gzip"))
    write_tag(tmp_path, "library/bad", "latest", bad)
    write_tag(tmp_path, "library/good", "latest", good)
    reader = open_reader(tmp_path)
    assert reader.parent_chain(bad) == (bad,)
    rows = {row.repository: row for row in list_tags(reader)}
    assert set(rows) == {"library/bad", "library/good"}
    assert rows["library/bad"].warnings and not rows["library/good"].warnings
