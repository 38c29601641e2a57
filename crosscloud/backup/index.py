"""The backup index: what each destination object is a copy of, so reruns need no HEADs.

S3 listings carry size and ETag but not user metadata, so telling "unchanged" from the
listings alone needs one more fact per object: which source version the bytes behind a
destination ETag came from. The index (`<prefix>.crosscloud/index.jsonl.gz`, gzip JSON
lines `[key, dest_etag, source_etag]` after a header) records that fact for every copy this
engine made or checked. It is a cache, never the truth: an entry is used only while the
destination listing still shows the same ETag (same bytes), otherwise the run falls back to
a HEAD of the object's `crosscloud-source-etag` metadata. A lost or stale index costs HEADs,
not correctness. Only the lease holder writes it, at the end of a run.

Memory stays bounded by the object count: the index is sorted in the source's listing order
(named in the header), so a run reads it in step with the source listing (`walk.py`), and
writes the next one with an external merge sort through temporary files.
"""

from __future__ import annotations

import gzip
import heapq
import json
import logging
import tempfile
from collections.abc import Iterable, Iterator
from itertools import count
from typing import IO, Any, BinaryIO, cast

from crosscloud.backup.range import KeyRange
from crosscloud.backup.walk import SortKey
from crosscloud.errors import CrossCloudError, NotFound
from crosscloud.stores.base import ObjectStore, PutOptions

log = logging.getLogger("crosscloud.backup")
INDEX_NAME = ".crosscloud/index.jsonl.gz"
SEGMENTS_NAME = ".crosscloud/index/segments.json"  # a fan-out run's segments (runstate.py)
VERSION = 2  # 1 was sorted by code point whatever the source; it is ignored (costs HEADs once)
RUN_SIZE = 10_000  # entries sorted in memory at once (a few MiB)
FAN_IN = 16  # sorted runs on disk merged at once
SPOOL_BYTES = 1024 * 1024  # the compressed index is built in memory up to this, then on disk
UPLOAD_PART_BYTES = 8 * 1024 * 1024  # the upload holds one part of at most this in memory

Entry = tuple[str, str]  # (destination ETag, source ETag)
Line = tuple[int, str, "str | None", "str | None"]  # a run's line: (sequence, key, dest ETag, source ETag)


def read(store: ObjectStore, key: str, order_name: str) -> Iterator[tuple[str, Entry]]:
    """The entries in file order, if the index is in `order_name`; nothing if absent or unusable.

    The file is fetched to local disk first: the run reads it slowly, in step with the source
    listing, and a download left idle that long would be cut by the service.
    """
    with tempfile.TemporaryFile() as local:
        try:
            with store.open(key) as reader:
                for chunk in reader.iter_chunks():
                    local.write(chunk)
            local.seek(0)
            with gzip.GzipFile(fileobj=local) as lines:
                header = json.loads(lines.readline() or b"{}")
                if header.get("version") != VERSION or header.get("order") != order_name:
                    return
                for line in lines:
                    relative, dest_etag, source_etag = json.loads(line)
                    yield relative, (dest_etag, source_etag)
        except NotFound:
            return
        except (CrossCloudError, OSError, EOFError, ValueError, TypeError) as exc:
            # A damaged index only costs HEADs; say so and carry on without the rest of it.
            log.warning("backup index %s unusable (%s); checking objects with HEAD instead", key,
                        exc.message if isinstance(exc, CrossCloudError) else type(exc).__name__)


def latest(store: ObjectStore, prefix: str, order_name: str, order: SortKey,
           within: str = "") -> Iterator[tuple[str, Entry]]:
    """The index of the last finished backup under `prefix`, however it ran, in file order.

    An in-process run writes one file (`INDEX_NAME`); a fan-out run one segment per shard,
    published in range order by `SEGMENTS_NAME` (runstate.py). The newer of the two is read;
    of the segments, only those whose range can hold keys starting with `within`.
    """
    pointer = _pointer(store, prefix + SEGMENTS_NAME, order_name)
    if pointer is not None:
        segments, published = pointer
        try:
            single = store.stat(prefix + INDEX_NAME).last_modified
        except NotFound:
            single = None
        except CrossCloudError as exc:
            log.warning("backup index %s unusable (%s); checking objects with HEAD instead", prefix + INDEX_NAME,
                        exc.message)
            return
        if single is None or single <= published:
            for key_range, key in segments:
                if _may_hold(key_range, within, order):
                    yield from read(store, key, order_name)
            return
    yield from read(store, prefix + INDEX_NAME, order_name)


def _pointer(store: ObjectStore, key: str, order_name: str) -> tuple[list[tuple[KeyRange, str]], Any] | None:
    """The segments a fan-out run published (in range order) and when; None if none or unusable."""
    try:
        with store.open(key) as reader:
            data = json.loads(b"".join(reader.iter_chunks()))
            published = reader.info.last_modified
        if data.get("order") != order_name:
            return None
        return [(KeyRange.from_json(s), str(s["key"])) for s in data["segments"]], published
    except NotFound:
        return None
    except (CrossCloudError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("backup index pointer %s unusable (%s); reading the single index instead", key,
                    exc.message if isinstance(exc, CrossCloudError) else type(exc).__name__)
        return None


def _may_hold(key_range: KeyRange, prefix: str, order: SortKey) -> bool:
    """Whether a key starting with `prefix` can lie in `key_range` (keys with a prefix are one
    interval in any code-unit order: from `prefix` up to the first key past all of them)."""
    if not prefix:
        return True
    if key_range.end is not None and order(key_range.end) < order(prefix):  # type: ignore[operator]
        return False
    start = key_range.start_after
    return start is None or start.startswith(prefix) or order(start) < order(prefix)  # type: ignore[operator]


class IndexWriter:
    """Collects entries in any order (the last one added for a key wins) and writes them sorted.

    Sorted runs of RUN_SIZE entries go to temporary files; whenever FAN_IN runs of one level
    pile up they are merged into one run of the next level. Why: a first copy records two
    entries per object, so a million objects made 200 open files (each with its buffers) and
    ten million 2,000, past common open-file limits; merged by levels, open files stay under
    FAN_IN per level (log base FAN_IN of the count) and each entry is rewritten once a level.
    """

    def __init__(self, order: SortKey, order_name: str):
        self._order, self._order_name = order, order_name
        self._seq = count()
        self._batch: list[tuple[Any, int, str, str | None, str | None]] = []
        self._runs: list[tuple[int, IO[str]]] = []  # (level, sorted run), oldest first

    def add(self, key: str, dest_etag: str | None, source_etag: str | None) -> None:
        """Record an entry; `None` ETags record that the key has no valid entry (a tombstone)."""
        self._batch.append((self._order(key), next(self._seq), key, dest_etag, source_etag))
        if len(self._batch) >= RUN_SIZE:
            self._spill()

    def _spill(self) -> None:
        self._batch.sort(key=lambda e: (e[0], e[1]))
        self._runs.append((0, self._write((seq, key, d, s) for _, seq, key, d, s in self._batch)))
        self._batch = []
        while len(self._runs) >= FAN_IN and len({level for level, _ in self._runs[-FAN_IN:]}) == 1:
            self._merge_newest()

    @staticmethod
    def _write(entries: Iterable[Line]) -> IO[str]:
        run = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - closed once merged
        for entry in entries:
            run.write(json.dumps(entry, ensure_ascii=False) + "\n")
        run.seek(0)
        return run

    def _merge_newest(self) -> None:
        """The newest FAN_IN runs (consecutive entries) into one: the last entry per key; its
        tombstones are dropped only when nothing older is left that they would hide."""
        group = self._runs[-FAN_IN:]
        oldest = len(self._runs) == FAN_IN
        try:
            merged = self._write(self._merged([run for _, run in group], drop_tombstones=oldest))
        finally:
            for _, run in group:
                run.close()
        self._runs[-FAN_IN:] = [(group[-1][0] + 1, merged)]

    def _merged(self, runs: list[IO[str]], *, drop_tombstones: bool) -> Iterator[Line]:
        """Runs merged in order (key, then sequence): the last entry per key."""
        streams = [((self._order(e[1]), e[0], tuple(e)) for e in map(json.loads, run)) for run in runs]
        last: Line | None = None
        for _, _, entry in heapq.merge(*streams, key=lambda e: (e[0], e[1])):
            if last is not None and last[1] != entry[1] and (not drop_tombstones or (last[2] and last[3])):
                yield last
            last = entry  # type: ignore[assignment]
        if last is not None and (not drop_tombstones or (last[2] and last[3])):
            yield last

    def _entries(self) -> Iterator[tuple[str, str, str]]:
        """Merged and sorted, the last entry per key, tombstones dropped."""
        self._spill()
        try:
            for _, key, dest_etag, source_etag in self._merged([run for _, run in self._runs], drop_tombstones=True):
                yield key, dest_etag, source_etag  # type: ignore[misc]
        finally:
            for _, run in self._runs:
                run.close()

    def save(self, store: ObjectStore, key: str, meta: dict[str, Any], part_size: int) -> None:
        """Write the index, built on disk and uploaded one part at a time.

        Why: the index grows ~35 bytes per object (gzip), i.e. ~35 MB at a million; with the
        copies' part size and part concurrency (16 MiB x 4) the upload buffered ~50 MiB at the
        very end of a run, over the run's steady RSS (measured: bench/backup_memory_bench.py).
        One part of at most 8 MiB in flight costs a few seconds once per run.
        """
        part = min(part_size, UPLOAD_PART_BYTES)
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            with gzip.GzipFile(fileobj=spool, mode="wb", compresslevel=5) as out:
                out.write(json.dumps({"version": VERSION, "order": self._order_name, **meta}).encode() + b"\n")
                for entry in self._entries():
                    out.write(json.dumps(entry, ensure_ascii=False).encode() + b"\n")
            size = spool.tell()
            spool.seek(0)
            store.put(key, cast(BinaryIO, spool), size,
                      PutOptions(content_type="application/gzip", part_size=part, multipart_threshold=part,
                                 concurrency=1))
