"""A verifying, file-like view of a source object, handed to the destination's `put`.

It counts and hashes exactly the bytes it hands out: SHA-256 per `part_size` slice (the
slices an S3 multipart upload is cut into, so the destination's per-part and composite
checksums can be checked against ours) and MD5 of the whole when the source recorded one.
When the source runs dry it checks size and MD5 and raises `IntegrityError` from `read`,
i.e. before the uploader can complete the write: a bad read never becomes a visible copy.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator

from crosscloud.errors import IntegrityError


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


class VerifyingStream:
    """`read(n)` returns exactly `n` bytes until the end (multipart part sizes depend on it)."""

    def __init__(self, chunks: Iterator[bytes], *, key: str, size: int, part_size: int,
                 content_md5: bytes | None = None, on_bytes: Callable[[int], None] | None = None):
        self._chunks = chunks
        self._key = key
        self._size = size
        self._part_size = part_size
        self._content_md5 = content_md5
        self._on_bytes = on_bytes
        self._pending = b""
        self._md5 = hashlib.md5(usedforsecurity=False) if content_md5 else None
        self._part = hashlib.sha256()
        self._part_filled = 0
        self._parts: list[bytes] = []
        self.bytes_read = 0
        self.finished = False

    # --- file-like -------------------------------------------------------------------
    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = max(self._size - self.bytes_read, 0) + 1  # to the end (and one more to see it)
        pieces: list[bytes] = []
        wanted = size
        while wanted > 0 and not self.finished:
            if not self._pending:
                chunk = next(self._chunks, None)
                if chunk is None:
                    self._finish()
                    break
                self._pending = chunk
                continue
            piece, self._pending = self._pending[:wanted], self._pending[wanted:]
            self._account(piece)  # before the end-of-stream checks run
            pieces.append(piece)
            wanted -= len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def readable(self) -> bool:
        return True

    # --- digests ---------------------------------------------------------------------
    def _account(self, data: bytes) -> None:
        self.bytes_read += len(data)
        if self.bytes_read > self._size:
            raise IntegrityError(f"{self._key!r} yielded more than the {self._size} bytes it declared")
        if self._md5 is not None:
            self._md5.update(data)
        view = memoryview(data)
        while view:
            take = min(len(view), self._part_size - self._part_filled)
            self._part.update(view[:take])
            self._part_filled += take
            view = view[take:]
            if self._part_filled == self._part_size:
                self._parts.append(self._part.digest())
                self._part, self._part_filled = hashlib.sha256(), 0
        if self._on_bytes is not None:
            self._on_bytes(len(data))

    def _finish(self) -> None:
        self.finished = True
        if self._part_filled or not self._parts:  # the tail, or the digest of b"" for an empty object
            self._parts.append(self._part.digest())
        if self.bytes_read != self._size:
            raise IntegrityError(f"read {self.bytes_read} bytes of {self._key!r}, expected {self._size}")
        if self._md5 is not None and self._md5.digest() != self._content_md5:
            raise IntegrityError(f"MD5 of the bytes read from {self._key!r} differs from the source's "
                                 "Content-MD5")

    def part_sha256(self) -> list[str]:
        """Base64 SHA-256 per part, once the stream is exhausted."""
        if not self.finished:
            raise IntegrityError(f"{self._key!r} was not read to the end")
        return [b64(d) for d in self._parts]

    def expected_checksums(self) -> set[str]:
        """What S3 may report as ChecksumSHA256: the whole-object digest (one request) or
        the composite `sha256(concat(part digests))` of a multipart upload (sans `-N`)."""
        composite = b64(hashlib.sha256(b"".join(self._parts)).digest())
        return {composite, b64(self._parts[0])} if len(self._parts) == 1 else {composite}

    def matches(self, reported: str) -> bool:
        value, _, count = reported.partition("-")
        if count and (not count.isdigit() or int(count) != len(self._parts)):
            return False
        return value in self.expected_checksums()
