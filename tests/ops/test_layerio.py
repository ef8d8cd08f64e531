"""Layer streams: compression sniffing, diff_ids, deterministic gzip, blob storing."""

from __future__ import annotations

import gzip
import os
import tracemalloc

import pytest

from regtool.ops import layerio
from tests.support.v1tree import compress, make_tar, sha

TAR = make_tar({"etc/hello": b"hello\n" * 1000, "bin/x": os.urandom(3000)})


ZEROS_64 = "sha256:3b6a07d0d404fab4e23b6d34bc6696a6a312dd92821332385e5af7c01c421351"


def pieces(data: bytes, size: int = 777) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("kind", ["gzip", "xz", "bzip2", "tar"])
def test_sniff_and_hash_give_the_uncompressed_digest(kind):
    data = compress(TAR, kind)
    assert layerio.sniff(data[:512]) == kind
    digests = layerio.hash_layer(pieces(data))
    assert digests.diff_id == sha(TAR)
    assert digests.source == kind and digests.recompressed is (kind != "gzip")
    assert digests.digest == sha(data) and digests.size == len(data)


def test_an_empty_tar_is_a_tar_and_garbage_is_unknown():
    assert layerio.sniff(b"\0" * 1024) == "tar"
    assert layerio.sniff(b"PK\x03\x04" + b"x" * 600) == "unknown"


def test_truncated_gzip_is_a_layer_error():
    data = compress(TAR, "gzip")
    with pytest.raises(layerio.LayerError, match="truncated"):
        layerio.hash_layer([data[: len(data) // 2]])


def test_gzip_output_is_deterministic_and_decompresses_to_the_input():
    data = TAR + os.urandom(3 << 20)  # several deflate blocks, cut differently below
    first = b"".join(layerio.gzip_chunks(pieces(data, 777_777)))
    second = b"".join(layerio.gzip_chunks(pieces(data, 4096)))
    assert first == second
    assert first[4:8] == b"\0\0\0\0"  # mtime 0
    assert gzip.decompress(first) == data


@pytest.mark.parametrize("kind", ["gzip", "xz", "tar"])
def test_gzip_layer_passes_gzip_through_and_recompresses_the_rest(kind):
    data = compress(TAR, kind)
    layer = layerio.GzipLayer(pieces(data), expected=sha(TAR))
    out = b"".join(layer)
    assert gzip.decompress(out) == TAR
    assert (out == data) is (kind == "gzip")
    assert layer.diff_id == sha(TAR)


def test_gzip_layer_raises_at_the_end_when_the_diff_id_differs():
    with pytest.raises(layerio.LayerError, match="config says"):
        b"".join(layerio.GzipLayer([TAR], expected="sha256:" + "0" * 64))


@pytest.mark.parametrize("kind", ["gzip", "xz", "bzip2"])
def test_a_chunk_that_expands_to_64_mib_is_read_in_bounded_memory(kind):
    """One small input chunk standing for 64 MiB of zeros: every reader of layer streams
    (decompress, hash_layer, GzipLayer) holds at most a few MiB of it at a time."""
    bomb = compress(bytes(64 << 20), kind)  # within a second or two for each kind
    assert len(bomb) < 1 << 20
    readers = {
        "decompress": lambda: sum(map(len, layerio.decompress([bomb], kind))),
        "hash_layer": lambda: layerio.hash_layer([bomb]).diff_id,
        "GzipLayer": lambda: sum(map(len, layerio.GzipLayer([bomb], expected=ZEROS_64))),
    }
    for name, read in readers.items():
        tracemalloc.start()
        try:
            read()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 16 << 20, f"{name}: {peak >> 20} MiB"
    assert max(map(len, layerio.decompress([bomb], kind))) <= layerio.OUT_LIMIT


@pytest.mark.parametrize("kind", ["gzip", "xz", "bzip2"])
def test_concatenated_members_and_zero_padding_decompress_whole(kind):
    data = compress(TAR[:5000], kind) + compress(TAR[5000:], kind) + b"\0" * 700
    for size in (1, 97, len(data)):
        assert b"".join(layerio.decompress(pieces(data, size), kind)) == TAR
    with pytest.raises(layerio.LayerError, match="corrupt"):
        b"".join(layerio.decompress([data[:40] + b"\xff" * 64 + data[104:]], kind))
