"""The backup planner: decides, per source object, copy / skip / look first, from the listings.

Inputs are the destination listing (key -> size, ETag) and the backup index (which source
ETag each destination ETag was copied from), both walked in step with the source listing
(`walk.py`), so memory does not grow with the number of objects. Absent or a different size
means copy; the same size means compare the source ETag with the one the copy was made
from: known from the index while the destination ETag is unchanged, else from a HEAD of the
copy's `crosscloud-source-etag` metadata (`check`). The planner only decides and remembers;
it never copies. `classify` must see the source keys in the source's listing order.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from crosscloud.backup import index
from crosscloud.backup.config import RESERVED, BackupConfig
from crosscloud.backup.metadata import SOURCE_ETAG
from crosscloud.backup.report import utc_iso
from crosscloud.backup.walk import InOrderLookup, prefetch
from crosscloud.errors import CrossCloudError, NotFound
from crosscloud.stores.base import MAX_KEY_BYTES, ObjectInfo, ObjectStore

log = logging.getLogger("crosscloud.backup")


class Action(enum.Enum):
    COPY = "copy"
    CHECK = "check"  # same size: a HEAD decides
    SKIP = "skip"  # the copy is current
    KEEP = "keep"  # the destination holds something else and is left alone (restore: skipped_newer)
    REFUSE = "refuse"  # cannot be copied (reason given)
    IGNORE = "ignore"  # not an object of this run (the reserved area): not counted at all


@dataclass(frozen=True)
class Decision:
    """What to do with one source object; a copy may be conditional on the destination."""

    action: Action
    reason: str = ""
    if_none_match: bool = False  # create only: a destination object created meanwhile is kept
    if_match: str | None = None  # replace only the destination object with this ETag


COPY, SKIP = Decision(Action.COPY), Decision(Action.SKIP)


class Planner(Protocol):
    """What a run asks of its planner (`BackupPlanner`, `restore_plan.RestorePlanner`)."""

    source_prefix: str  # the run lists the source under this

    def prepare(self) -> None: ...  # list the destination once (on a background thread)
    def classify(self, info: ObjectInfo) -> Decision: ...  # from the listings alone
    def check(self, info: ObjectInfo) -> Decision: ...  # after a HEAD (CHECK decisions)
    def dest_key(self, key: str) -> str: ...
    def learn(self, key: str, dest_etag: str, source_etag: str | None) -> None: ...
    def save_index(self, run_id: str) -> None: ...
    def on_empty(self) -> None: ...  # the source listed nothing: raise if that is an error
    def close(self) -> None: ...  # end background listings; called on every exit of a run


class BackupPlanner:
    """What the destination holds, and what each copy is a copy of (thread-safe)."""

    def __init__(self, source: ObjectStore, dest: ObjectStore, config: BackupConfig):
        self.dest, self.config = dest, config
        self.source_prefix = config.source_prefix  # what the run lists in the source
        self._lock = threading.Lock()
        self._order_name = source.listing_order
        self._source_order = source.sort_key
        self._listing: InOrderLookup[tuple[int, str]] | None = None
        self._index: InOrderLookup[index.Entry] | None = None
        self._next = index.IndexWriter(self._source_order, self._order_name)

    index_key = ""  # where `save_index` writes (default: `<prefix>.crosscloud/index.jsonl.gz`)

    def prepare(self) -> None:
        """Open the destination listing and the index; both are read as the source goes."""
        self.index_key = self.index_key or self.config.prefix + index.INDEX_NAME
        self._listing = InOrderLookup(self.destination_entries(), self.dest.sort_key)
        # Entries passed over outside the scope are kept; inside it their source is gone.
        self._index = InOrderLookup(self.index_entries(), self._source_order, passed=self._carry_outside_scope)

    def destination_entries(self) -> Iterator[tuple[str, tuple[int, str]]]:
        """(source-relative key, (size, ETag)) in the destination's order; a shard walks its range."""
        prefix, scope = self.config.prefix, self.config.source_prefix
        with prefetch(self.dest.list_pages(prefix + scope)) as pages:
            for page in pages:
                yield from ((info.key[len(prefix):], (info.size, info.etag)) for info in page.items)

    def index_entries(self) -> Iterator[tuple[str, index.Entry]]:
        """The last run's index in the source's order (its one file, or a fan-out run's
        segments); a shard reads the segments that cover its range."""
        # All of it, in scope or not: entries outside the scope are carried into the next index.
        return index.latest(self.dest, self.config.prefix, self._order_name, self._source_order)

    def close(self) -> None:
        """End the walks (their prefetch threads, downloads) now; the run calls it on every exit."""
        for lookup in (self._listing, self._index):
            if lookup is not None:
                lookup.close()

    def unsure(self, key: str) -> bool:
        """Whether a key the destination walk did not show may exist all the same (HEAD first)."""
        return False

    def _carry_outside_scope(self, key: str, entry: index.Entry) -> None:
        if not key.startswith(self.config.source_prefix):
            self._next.add(key, *entry)

    def classify(self, info: ObjectInfo) -> Decision:
        """Called from one thread, in the source's listing order."""
        if self._listing is None or self._index is None:
            raise RuntimeError("BackupPlanner.prepare() must run first")
        dest_key = self.config.prefix + info.key
        if info.key.startswith(RESERVED):
            return Decision(Action.REFUSE, f"the name maps into the reserved {RESERVED} area of the "
                                           "destination prefix")
        if len(dest_key.encode("utf-8")) > MAX_KEY_BYTES:
            return Decision(Action.REFUSE, f"the destination key is {len(dest_key.encode('utf-8'))} bytes "
                                           f"in UTF-8; S3 allows at most {MAX_KEY_BYTES}")
        listed = self._listing.find(info.key)
        known = self._index.find(info.key)
        if listed is None:
            return Decision(Action.CHECK if self.unsure(info.key) else Action.COPY)
        size, dest_etag = listed
        if known is None or known[0] != dest_etag:
            return Decision(Action.COPY if size != info.size else Action.CHECK)
        with self._lock:
            self._next.add(info.key, *known)  # still true, whatever happens next
        if size == info.size and known[1] == info.etag:
            return Decision(Action.SKIP)
        return Decision(Action.COPY)

    def dest_key(self, key: str) -> str:
        return self.config.prefix + key

    def check(self, info: ObjectInfo) -> Decision:
        """HEAD the copy: COPY if it must be copied again, else SKIP. Raises what the HEAD raised."""
        try:
            current = self.dest.stat(self.config.prefix + info.key)
        except NotFound:
            return COPY
        recorded = (current.metadata or {}).get(SOURCE_ETAG)
        self.learn(info.key, current.etag, recorded)
        return COPY if recorded != info.etag else SKIP

    def on_empty(self) -> None:
        """An empty source is a valid backup of nothing."""

    def learn(self, key: str, dest_etag: str, source_etag: str | None) -> None:
        """Remember (or forget, with None) what the copy behind `dest_etag` is a copy of."""
        with self._lock:
            self._next.add(key, dest_etag if source_etag else None, source_etag)

    def save_index(self, run_id: str) -> None:
        with self._lock:
            if self._index is not None:  # entries the run did not reach stay (validated next time)
                for key, entry in self._index.rest():
                    self._next.add(key, *entry)
            meta = {"run_id": run_id, "written": utc_iso(dt.datetime.now(dt.UTC))}
            try:
                self._next.save(self.dest, self.index_key, meta, self.config.part_size)
            except CrossCloudError as exc:  # the next run falls back to HEADs; the copies stand
                log.warning("backup %s could not write its index: %s", run_id, exc.message)
