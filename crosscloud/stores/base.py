"""The one storage interface both clouds implement (list, stat, open, put, link).

Like rclone's backends: each cloud's quirks stay in its own module, and everything above
(listing, reads, backup) is written once against `ObjectStore`.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from crosscloud.errors import BadRequest, IntegrityError

MAX_KEY_BYTES = 1024  # S3's limit on key length in UTF-8 bytes


def utf8_order(key: str) -> bytes:
    """S3's listing order: keys compared as UTF-8 bytes (the same as by code point)."""
    return key.encode("utf-8", "surrogatepass")


def utf16_order(key: str) -> bytes:
    """Azure's listing order: names compared as UTF-16 code units. It differs from UTF-8's
    only where a character above U+FFFF (a surrogate pair, 0xD800-0xDFFF) meets one in
    U+E000-U+FFFF at the same position: UTF-16 puts the first before, UTF-8 after."""
    return key.encode("utf-16-be", "surrogatepass")


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing or a stat tells about one object. `etag` is unquoted."""

    key: str
    size: int
    last_modified: dt.datetime
    etag: str
    content_type: str | None = None  # the rest: from stat/open only, None in listings
    content_md5: bytes | None = None  # Azure's Content-MD5 when the blob has one
    metadata: Mapping[str, str] | None = None


@dataclass
class Page:
    """One page of a listing; `next_token` is None on the last page."""

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
    # The whole object's MD5, as the source recorded it: stores with a Content-MD5 property
    # (Azure) set it, so a later comparison needs no read; others ignore it.
    content_md5: bytes | None = None
    # Base64 SHA-256 of each `part_size` slice of the bytes the stream yielded, called once
    # the stream is exhausted. Stores that can have the service verify them do, and refuse
    # to make the object visible on a mismatch (`IntegrityError`).
    part_sha256: Callable[[], list[str]] | None = None
    # A single-request put may take the store's lean path (`fast_putter`), if it has one.
    lean: bool = False


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


class StartRefused(BadRequest):
    """The service refused a listing's start position (a key no object could have)."""

    code = "invalid_start"


class ObjectStore(ABC):
    """A flat namespace of objects in one container or bucket."""

    name: str  # "azure" | "s3"
    max_page_size: int = 1000

    listing_order = "utf-8"  # the name of `sort_key`'s order, for files that record one

    def sort_key(self, key: str) -> bytes:
        """This store's listing order (its service's own): keys compare as these bytes."""
        return utf8_order(key)

    @abstractmethod
    def list_pages(self, prefix: str = "", page_size: int | None = None,
                   start_after: str | None = None) -> Iterator[Page]:
        """Pages of the objects under `prefix` in this store's order (`sort_key`), only the
        keys after `start_after` in that order (which need not be an existing key).

        Listing asks for and returns key, size, last-modified and ETag only. A store
        raises `StartRefused` when the service refuses `start_after` itself.
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
    # Set by the factory where the store has them: lean single-request paths for small
    # objects (`fast_azure.py`, `fast_s3.py`) that keep the SDK path's retries, errors and checks.
    fast_reader: Any = None
    fast_putter: Any = None

    def open_small(self, key: str, limit: int) -> ObjectReader | None:
        """`key` read whole in one lean request if it is at most `limit` bytes; None: use `open`."""
        return self.fast_reader.open(key, limit) if self.fast_reader is not None else None

    def cleanup(self, prefix: str) -> int:
        """Discard leftovers of interrupted writes under `prefix`; returns how many.

        Nothing to do by default (Azure drops uncommitted blocks by itself); S3 aborts
        incomplete multipart uploads, which are invisible but billed until aborted.
        """
        return 0

    def describe(self) -> str:
        return self.name


class ReadPastEnd:
    """A stream read once past `size` as soon as an uploader has taken `size` bytes: uploaders
    that stop at the declared length (Azure's SDK) would otherwise commit before a verifying
    stream reaches its end, where it checks size and checksum."""

    def __init__(self, stream: BinaryIO, size: int, key: str):
        self._stream, self._size, self._key = stream, size, key
        self._taken = 0
        self._ended = False

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n) if n is not None and n >= 0 else self._stream.read()
        self._taken += len(data)
        if self._taken >= self._size and not self._ended:
            self._ended = True
            if self._stream.read(1):
                raise IntegrityError(f"{self._key!r} yielded more than the {self._size} bytes it declared")
        return data

    def readable(self) -> bool:
        return True
