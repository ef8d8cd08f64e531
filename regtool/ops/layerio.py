"""Layer streams: tell the compression by magic, hash the uncompressed tar, gzip raw tars.

Everything works on iterators of chunks, so memory stays flat however large a layer is.
gzip output is deterministic (mtime 0, level 1) so importing the same tar twice gives the
same blob digests. ISA-L (`isal`) does the deflating and inflating when installed (about 9x
zlib's deflate speed on incompressible data); Python's zlib is the fallback. Decompression is
bounded: no step returns more than OUT_LIMIT bytes, however far a layer expands.
"""

from __future__ import annotations

import bz2
import hashlib
import lzma
import queue
import tarfile
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from regtool.layout.v2 import paths
from regtool.layout.v2.writer import V2Writer
from regtool.storage.driver import PathNotFound

try:  # ISA-L's deflate and inflate; falls back to zlib (same stream format, other bytes)
    from isal import isal_zlib

    _deflate_lib: Any = isal_zlib
    DEFLATE = "isal"
    _inflate_lib: Any = isal_zlib
    _ERRORS: tuple[type[Exception], ...] = (
        _deflate_lib.error,
        zlib.error,
        lzma.LZMAError,
        OSError,
        EOFError,
    )
except ImportError:  # pragma: no cover - isal is a dependency
    _deflate_lib = zlib
    DEFLATE = "zlib"
    _inflate_lib = zlib
    _ERRORS = (zlib.error, lzma.LZMAError, OSError, EOFError)

CHUNK = 1 << 20
OUT_LIMIT = 1 << 20  # most bytes one decompression step returns, however the input expands
GZIP_LEVEL = 1
GZIP = "gzip"
XZ = "xz"
BZIP2 = "bzip2"
TAR = "tar"
UNKNOWN = "unknown"
SNIFF_BYTES = 512


class LayerError(ValueError):
    """A layer stream that cannot be read as (compressed) tar."""


def sniff(head: bytes) -> str:
    """The compression of a layer from its first bytes (at least 262 for plain tar)."""
    if head.startswith(b"\x1f\x8b"):
        return GZIP
    if head.startswith(b"\xfd7zXZ\x00"):
        return XZ
    if head.startswith(b"BZh"):
        return BZIP2
    if head[257:262] == b"ustar" or (len(head) >= 512 and not any(head[:512])):
        return TAR
    if len(head) >= 512:
        try:
            tarfile.TarInfo.frombuf(head[:512], "utf-8", "surrogateescape")
            return TAR  # an old v7 tar header with a valid checksum
        except tarfile.HeaderError:
            pass
    return UNKNOWN


def read_chunks(handle: IO[bytes], size: int = CHUNK) -> Iterator[bytes]:
    while True:
        chunk = handle.read(size)
        if not chunk:
            return
        yield chunk


def peek(chunks: Iterable[bytes]) -> tuple[str, Iterator[bytes]]:
    """Sniff the compression of a chunk stream; returns it and the full stream again."""
    it = iter(chunks)
    head = b""
    pending = []
    for chunk in it:
        pending.append(chunk)
        head += chunk
        if len(head) >= SNIFF_BYTES:
            break

    def replay() -> Iterator[bytes]:
        yield from pending
        yield from it

    return sniff(head[:SNIFF_BYTES]), replay()


def _decompressor(kind: str) -> Any:
    if kind == GZIP:
        return _inflate_lib.decompressobj(47)  # 32 + 15: gzip header, auto-detected
    if kind == XZ:
        return lzma.LZMADecompressor()
    if kind == BZIP2:
        return bz2.BZ2Decompressor()
    raise LayerError(f"not a compressed stream: {kind}")


class Inflater:
    """Decompress a gzip/xz/bzip2 stream fed in chunks, at most OUT_LIMIT bytes at a time.

    However much a chunk expands (a few hundred bytes of bzip2 can stand for gigabytes of
    zeros), no call returns more than OUT_LIMIT bytes: the rest of the input waits in the
    engine (`unconsumed_tail`, `needs_input`). Concatenated members are followed; zero
    bytes after the last member are padding.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._engine = _decompressor(kind)

    def feed(self, data: bytes) -> Iterator[bytes]:
        try:
            while data:
                if self._engine.eof:
                    if not data.strip(b"\0"):
                        return  # padding after a member
                    self._engine = _decompressor(self.kind)  # another member follows
                yield from self._bounded(data)
                data = self._engine.unused_data if self._engine.eof else b""
        except _ERRORS as exc:
            raise LayerError(f"corrupt {self.kind} stream: {exc}") from None

    def _bounded(self, data: bytes) -> Iterator[bytes]:
        engine = self._engine
        if self.kind == GZIP:  # zlib's API: unconsumed input waits in unconsumed_tail
            while True:
                out = engine.decompress(data, OUT_LIMIT)
                if out:
                    yield out
                left = engine.unconsumed_tail
                if engine.eof or (len(out) < OUT_LIMIT and not left):
                    return
                if not out and len(left) >= len(data):
                    raise LayerError(f"corrupt {self.kind} stream: no progress")
                data = left
        out = engine.decompress(data, OUT_LIMIT)  # bz2/lzma: input kept inside
        while True:
            if out:
                yield out
            if engine.eof or engine.needs_input:
                return
            out = engine.decompress(b"", OUT_LIMIT)

    def close(self) -> None:
        """Raise LayerError unless the stream ended with a complete member."""
        if not self._engine.eof:
            raise LayerError(f"truncated {self.kind} stream")


def decompress(chunks: Iterable[bytes], kind: str) -> Iterator[bytes]:
    """The uncompressed bytes of a gzip/xz/bzip2 stream (concatenated members allowed),
    in pieces of at most OUT_LIMIT bytes."""
    if kind == TAR:
        yield from chunks
        return
    if kind == UNKNOWN:
        raise LayerError("not a tar, gzip, xz or bzip2 stream")
    inflater = Inflater(kind)
    for chunk in chunks:
        yield from inflater.feed(chunk)
    inflater.close()


def gzip_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Deterministic gzip (mtime 0, level 1) of a byte stream.

    ISA-L's output depends on how the input is split, so the input is cut into fixed
    CHUNK-sized blocks first: the same bytes always give the same gzip bytes.
    """
    engine = _deflate_lib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    for block in fixed_blocks(chunks, CHUNK):
        out = engine.compress(block)
        if out:
            yield out
    yield engine.flush()


def fixed_blocks(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """The same bytes re-cut into blocks of exactly `size` (the last one shorter)."""
    pending = bytearray()
    for chunk in chunks:
        if not pending and len(chunk) == size:
            yield chunk
            continue
        pending += chunk
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    if pending:
        yield bytes(pending)


_DONE = object()


def in_thread(chunks: Iterable[bytes], depth: int = 8) -> Iterator[bytes]:
    """Run a chunk producer in a background thread, at most `depth` chunks ahead.

    Exceptions of the producer are raised here; closing this generator stops the producer.
    """
    pipe: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        pipe.put(chunk, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            pipe.put(_DONE)
        except BaseException as exc:  # handed to the consumer
            pipe.put(exc)

    worker = threading.Thread(target=produce, name="layer-producer", daemon=True)
    worker.start()
    try:
        while True:
            item = pipe.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            try:
                pipe.get_nowait()
            except queue.Empty:
                worker.join(0.05)


class Hasher:
    """Passes chunks through, counting and hashing them (sha256)."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)

    def tap(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self._hash.update(chunk)
            self.size += len(chunk)
            yield chunk

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


@dataclass(frozen=True, slots=True)
class LayerDigests:
    """A layer as stored: its blob (gzip) and its uncompressed tar's digest."""

    digest: str  # sha256 of the gzip blob
    size: int  # blob bytes
    diff_id: str  # sha256 of the uncompressed tar
    source: str  # compression found: gzip, xz, bzip2 or tar
    recompressed: bool


def hash_layer(chunks: Iterable[bytes]) -> LayerDigests:
    """Read a layer once: digest of its bytes and diff_id of what it decompresses to.

    Only meaningful as a blob digest for gzip layers; others must be recompressed.
    """
    kind, stream = peek(chunks)
    blob = Hasher()
    raw = Hasher()
    for _ in raw.tap(decompress(blob.tap(stream), kind)):
        pass
    return LayerDigests(blob.digest, blob.size, raw.digest, kind, kind != GZIP)


class GzipLayer:
    """Iterate to get a layer as gzip: gzip passes through unchanged, others are recompressed.

    The uncompressed bytes are hashed on the way (`diff_id`); with `expected` set, the end
    of the stream raises LayerError when they differ, so a write in progress is abandoned.
    """

    def __init__(
        self, chunks: Iterable[bytes], expected: str | None = None, blob: str | None = None
    ) -> None:
        self.source, self._stream = peek(chunks)
        self._raw = Hasher()
        self.expected = expected
        self.blob = blob  # the digest the input bytes must have (a name in an archive)

    @property
    def recompressed(self) -> bool:
        return self.source != GZIP

    @property
    def diff_id(self) -> str:
        return self._raw.digest

    def __iter__(self) -> Iterator[bytes]:
        if self.source == GZIP:
            inflater = _TeeInflate(self._raw)
            given = Hasher()
            for chunk in given.tap(self._stream):
                inflater.feed(chunk)
                yield chunk
            inflater.close()
        else:
            given = self._raw
            # read + hash + deflate in a second thread while this one hashes and writes
            # (hashlib and ISA-L release the GIL): about 1.5x faster on two cores
            yield from in_thread(gzip_chunks(self._raw.tap(decompress(self._stream, self.source))))
        if self.blob is not None and given.digest != self.blob:
            raise LayerError(f"content is {given.digest}, but it is named {self.blob}")
        if self.expected is not None and self.diff_id != self.expected:
            raise LayerError(f"uncompressed layer is {self.diff_id}, config says {self.expected}")


class _TeeInflate:
    """Inflate gzip chunks as they pass, hashing the plain bytes (bounded, see Inflater)."""

    def __init__(self, sink: Hasher) -> None:
        self._inflater = Inflater(GZIP)
        self._sink = sink

    def feed(self, chunk: bytes) -> None:
        for out in self._inflater.feed(chunk):
            self._sink.update(out)

    def close(self) -> None:
        self._inflater.close()


def link_exists(writer: V2Writer, repo: str, digest: str) -> bool:
    try:
        return writer.driver.get(paths.layer_link(repo, digest)).decode() == digest
    except (PathNotFound, UnicodeDecodeError):
        return False
