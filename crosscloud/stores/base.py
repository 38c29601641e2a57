"""The one storage interface both clouds implement (list, stat, open, put, link).

Like rclone's backends: each cloud's quirks stay in its own module, and everything above
(listing, reads, backup) is written once against `ObjectStore`.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO

MAX_KEY_BYTES = 1024  # S3's limit on key length in UTF-8 bytes


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing or a stat tells about one object. `etag` is unquoted."""

    key: str
    size: int
    last_modified: dt.datetime
    etag: str
    content_type: str | None = None
    content_md5: bytes | None = None  # Azure's Content-MD5 when the blob has one
    metadata: Mapping[str, str] | None = None  # None: not known from a listing


@dataclass
class Page:
    """One page of a listing, and the token that lists the page after it (None at the end)."""

    items: list[ObjectInfo]
    next_token: str | None


@dataclass
class PutOptions:
    """How to write: content settings, user metadata, transfer tuning."""

    content_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    part_size: int = 16 * 1024 * 1024
    concurrency: int = 4
    multipart_threshold: int = 16 * 1024 * 1024
    # Conditional write (single-request puts only): create only if absent / only if the
    # current ETag (unquoted) is this one; a lost race raises `PreconditionFailed`.
    if_none_match: bool = False
    if_match: str | None = None
    # Base64 SHA-256 of each `part_size` slice of the bytes the stream yielded, called once
    # the stream is exhausted. Stores that can have the service verify them do, and refuse
    # to make the object visible on a mismatch (`IntegrityError`).
    part_sha256: Callable[[], list[str]] | None = None


@dataclass(frozen=True)
class PutResult:
    etag: str
    checksum_sha256: str | None  # as the destination reports it (base64; "-N" if composite)


class ObjectReader:
    """An open object: its properties and a stream of its bytes. Close it (or use `with`)."""

    def __init__(self, info: ObjectInfo, chunks: Iterator[bytes], close: Callable[[], None] = lambda: None):
        self.info = info
        self._chunks = chunks
        self._close = close
        self._buffer = b""

    def iter_chunks(self) -> Iterator[bytes]:
        if self._buffer:
            data, self._buffer = self._buffer, b""
            yield data
        yield from self._chunks

    def read(self, size: int = -1) -> bytes:
        """File-like read so SDK uploaders can consume the stream without buffering it all."""
        if size is None or size < 0:
            data = self._buffer + b"".join(self._chunks)
            self._buffer = b""
            return data
        while len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def close(self) -> None:
        self._close()

    def __enter__(self) -> ObjectReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ObjectStore(ABC):
    """A flat namespace of objects in one container or bucket."""

    name: str  # "azure" | "s3"
    max_page_size: int = 1000

    @abstractmethod
    def list_pages(self, prefix: str = "", page_token: str | None = None,
                   page_size: int | None = None, start_after: str | None = None) -> Iterator[Page]:
        """Pages of objects under `prefix` in key order, starting at `page_token`.

        `start_after` is a hint: a store that can start listing after a key (S3) may do so
        instead of using `page_token`; callers still skip keys up to it themselves.
        """

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for page in self.list_pages(prefix):
            yield from page.items

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Properties of one object, with its metadata; `NotFound` if absent."""

    @abstractmethod
    def open(self, key: str) -> ObjectReader:
        """Stream one object; the reader pins the version it started with."""

    @abstractmethod
    def put(self, key: str, stream: BinaryIO, size: int, options: PutOptions) -> PutResult:
        """Write a stream under `key`, all or nothing (no partial object is ever visible)."""

    @abstractmethod
    def link(self, key: str, ttl_seconds: int, *, known_to_exist: bool = False) -> str:
        """A short-lived read-only URL for one object; `NotFound` if it is absent, unless
        the caller has just seen it (`known_to_exist`) and the check would be a wasted call."""

    supports_conditional_put = False  # honours PutOptions.if_none_match / if_match
    reads_ahead_on_open = False  # `open` already downloads the first range of the body

    def cleanup(self, prefix: str) -> int:
        """Discard leftovers of interrupted writes under `prefix`; returns how many.

        Nothing to do by default (Azure drops uncommitted blocks by itself); S3 aborts
        incomplete multipart uploads, which are invisible but billed until aborted.
        """
        return 0

    def describe(self) -> str:
        return self.name
