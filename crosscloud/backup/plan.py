"""The backup planner: decides, per source object, copy / skip / look first, from the listings.

Inputs are the destination listing (key -> size, ETag) and the backup index (which source
ETag each destination ETag was copied from). Absent or a different size means copy; the
same size means compare the source ETag with the one the copy was made from: known from
the index while the destination ETag is unchanged, else from a HEAD of the copy's
`crosscloud-source-etag` metadata (`check`). The planner only decides and remembers; it
never copies.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import threading
from dataclasses import dataclass

from crosscloud.backup import index
from crosscloud.backup.config import RESERVED, BackupConfig
from crosscloud.backup.metadata import SOURCE_ETAG
from crosscloud.backup.report import utc_iso
from crosscloud.errors import CrossCloudError, NotFound
from crosscloud.stores.base import MAX_KEY_BYTES, ObjectInfo, ObjectStore

log = logging.getLogger("crosscloud.backup")


class Action(enum.Enum):
    COPY = "copy"
    CHECK = "check"  # same size: a HEAD of the destination decides
    SKIP = "skip"  # the copy is current
    REFUSE = "refuse"  # cannot be backed up (reason given)


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str = ""


class BackupPlanner:
    """What the destination holds, and what each copy is a copy of (thread-safe)."""

    def __init__(self, dest: ObjectStore, config: BackupConfig):
        self.dest, self.config = dest, config
        self._lock = threading.Lock()
        self._listing: dict[str, tuple[int, str]] = {}  # destination: key -> (size, ETag)
        self._known: dict[str, tuple[str, str]] = {}  # key -> (destination ETag, source ETag)
        self._index_carry: dict[str, tuple[str, str]] = {}  # index entries outside this run's scope

    def prepare(self) -> None:
        """List the destination prefix once and load the index entries that still hold."""
        prefix = self.config.prefix
        for info in self.dest.list(prefix + self.config.source_prefix):
            relative = info.key[len(prefix):]
            if not relative.startswith(RESERVED):
                self._listing[relative] = (info.size, info.etag)
        scope = self.config.source_prefix
        for key, (dest_etag, source_etag) in index.load(self.dest, prefix + index.INDEX_NAME).items():
            if not key.startswith(scope):
                self._index_carry[key] = (dest_etag, source_etag)
            elif key in self._listing and self._listing[key][1] == dest_etag:  # else stale
                self._known[key] = (dest_etag, source_etag)

    def classify(self, info: ObjectInfo) -> Decision:
        dest_key = self.config.prefix + info.key
        if info.key.startswith(RESERVED):
            return Decision(Action.REFUSE, f"the name maps into the reserved {RESERVED} area of the "
                                           "destination prefix")
        if len(dest_key.encode("utf-8")) > MAX_KEY_BYTES:
            return Decision(Action.REFUSE, f"the destination key is {len(dest_key.encode('utf-8'))} bytes "
                                           f"in UTF-8; S3 allows at most {MAX_KEY_BYTES}")
        size, dest_etag = self._listing.get(info.key, (None, None))
        if size is None or size != info.size:
            return Decision(Action.COPY)
        known = self._known.get(info.key)
        if known is not None and known[0] == dest_etag:
            return Decision(Action.SKIP if known[1] == info.etag else Action.COPY)
        return Decision(Action.CHECK)

    def check(self, info: ObjectInfo) -> bool:
        """HEAD the copy: True if it must be copied again. Raises what the HEAD raised."""
        try:
            current = self.dest.stat(self.config.prefix + info.key)
        except NotFound:
            return True
        recorded = (current.metadata or {}).get(SOURCE_ETAG)
        self.learn(info.key, current.etag, recorded)
        return recorded != info.etag

    def learn(self, key: str, dest_etag: str, source_etag: str | None) -> None:
        """Remember (or forget, with None) what the copy behind `dest_etag` is a copy of."""
        with self._lock:
            if source_etag:
                self._known[key] = (dest_etag, source_etag)
            else:
                self._known.pop(key, None)

    def save_index(self, run_id: str) -> None:
        with self._lock:
            entries = {**self._index_carry, **self._known}
        meta = {"run_id": run_id, "written": utc_iso(dt.datetime.now(dt.UTC))}
        try:
            index.save(self.dest, self.config.prefix + index.INDEX_NAME,
                       ((k, d, s) for k, (d, s) in sorted(entries.items())), meta, self.config.part_size)
        except CrossCloudError as exc:  # the next run falls back to HEADs; the copies stand
            log.warning("backup %s could not write its index: %s", run_id, exc.message)
