"""In-memory ObjectStore for unit tests (never used against a cloud)."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from typing import BinaryIO

from crosscloud.errors import NotFound
from crosscloud.stores.base import (
    ObjectInfo,
    ObjectReader,
    ObjectStore,
    Page,
    PutOptions,
    PutResult,
    utf8_order,
    utf16_order,
)

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _code_units(key: str) -> list[int]:
    """The UTF-16 code units of `key`, worked out by hand (not with the code under test)."""
    units: list[int] = []
    for char in key:
        point = ord(char)
        if point > 0xFFFF:
            units += [0xD800 + ((point - 0x10000) >> 10), 0xDC00 + ((point - 0x10000) & 0x3FF)]
        else:
            units.append(point)
    return units


class MemoryStore(ObjectStore):
    """Pages like a cloud: fixed page size, keys in the service's order, resumes after a key.

    S3 (default) orders keys by UTF-8 bytes, which is Python's own code-point order; Azure
    (`utf16=True`) by UTF-16 code units. The fake orders by itself and declares the order
    with the store's `sort_key`, so a wrong `sort_key` shows in the listing tests.
    """

    def __init__(self, name: str, keys: dict[str, bytes] | None = None, page_size: int = 3,
                 *, utf16: bool = False):
        self.name = name
        self.utf16 = utf16
        self.max_page_size = page_size
        self.objects = dict(keys or {})
        self.list_calls = 0
        self.fail_list = False
        self.stat_calls = 0
        self.read_bytes: dict[str, int] = {}  # bytes taken from each object's stream
        self.closed: list[str] = []  # keys whose reader was closed

    def list_pages(self, prefix: str = "", page_size: int | None = None,
                   start_after: str | None = None) -> Iterator[Page]:
        self.list_calls += 1
        if self.fail_list:
            raise RuntimeError(f"{self.name} is down")
        order = _code_units if self.utf16 else str
        keys = sorted((k for k in self.objects if k.startswith(prefix)), key=order)
        if start_after is not None:
            keys = [k for k in keys if order(k) > order(start_after)]
        size = min(page_size or self.max_page_size, self.max_page_size)
        for start in range(0, max(len(keys), 1), size):
            more = start + size < len(keys)
            yield Page([self._info(k) for k in keys[start:start + size]], "more" if more else None)

    def sort_key(self, key: str) -> bytes:
        return utf16_order(key) if self.utf16 else utf8_order(key)

    def _info(self, key: str) -> ObjectInfo:
        return ObjectInfo(key, len(self.objects[key]), EPOCH, f"etag-{self.name}-{key}")

    def stat(self, key: str) -> ObjectInfo:
        self.stat_calls += 1
        if key not in self.objects:
            raise NotFound(key)
        return self._info(key)

    def open(self, key: str) -> ObjectReader:
        info = self.stat(key)
        data = self.objects[key]
        self.read_bytes.setdefault(key, 0)

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(data), 4):
                self.read_bytes[key] += len(data[start:start + 4])
                yield data[start:start + 4]

        return ObjectReader(info, chunks(), lambda: self.closed.append(key))

    def put(self, key: str, stream: BinaryIO, size: int, options: PutOptions) -> PutResult:
        self.objects[key] = stream.read()
        return PutResult(f"etag-{key}", None)

    def link(self, key: str, ttl_seconds: int, *, known_to_exist: bool = False) -> str:
        if not known_to_exist:
            self.stat(key)
        return f"memory://{self.name}/{key}?ttl={ttl_seconds}"


def reader_of(data: bytes, chunk: int = 3) -> ObjectReader:
    buf = io.BytesIO(data)
    return ObjectReader(ObjectInfo("k", len(data), EPOCH, "e"), iter(lambda: buf.read(chunk), b""))


def merged_in_documented_order(azure: list[str], s3: list[str]) -> list[tuple[str, str]]:
    """The combined order docs/listing.md documents, written independently of listing.py:
    each cloud's keys as that cloud listed them; of the two next ones, the smaller as UTF-8
    bytes comes first, Azure's on equal keys."""
    out, i, j = [], 0, 0
    while i < len(azure) or j < len(s3):
        if j == len(s3) or (i < len(azure) and azure[i].encode() <= s3[j].encode()):
            out.append((azure[i], "azure"))
            i += 1
        else:
            out.append((s3[j], "s3"))
            j += 1
    return out
