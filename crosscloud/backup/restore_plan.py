"""The restore planner: per backup version, create the blob, skip it, or leave the blob alone.

Restore never deletes and, by default, never replaces: a blob that is absent is created
(create-only, so one created meanwhile is kept); a blob that already holds the version's
bytes is skipped; any other blob (changed since it was backed up, or newer than the moment
restored) is left alone and reported `skipped_newer`, unless `overwrite` (then replaced
only if it is still the blob seen, If-Match). "Holds the bytes" is decided cheaply: the
blob's ETag is the source ETag the backup copy was made from (known from the backup index
while the copy is unchanged, else from a HEAD of the version), or the blob's Content-MD5
(a HEAD of the blob: listings carry no MD5) equals the MD5 the backup recorded, at equal
size. HEADs are sent only for keys present on both sides whose ETags do not tell. The
target listing and the index are walked in step with the backup listing (`walk.py`), so
memory does not grow with the number of objects.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Iterator, Mapping

from crosscloud.backup import index
from crosscloud.backup.config import RESERVED
from crosscloud.backup.metadata import SOURCE_ETAG, SOURCE_MD5, UNVERIFIED, user_metadata
from crosscloud.backup.plan import Action, Decision
from crosscloud.backup.walk import InOrderLookup, prefetch
from crosscloud.errors import BadRequest, CrossCloudError, NotFound
from crosscloud.stores.base import ObjectInfo, ObjectStore

MAX_BLOB_NAME = 1024  # Azure's limit on blob names, in characters
Blob = tuple[int, str]  # size, ETag
SKIP, CHECK = Decision(Action.SKIP), Decision(Action.CHECK)
CREATE = Decision(Action.COPY, if_none_match=True)


def recorded_md5(metadata: Mapping[str, str] | None) -> bytes | None:
    """The source blob's Content-MD5 as the backup copy recorded it (None if not, or malformed)."""
    value = (metadata or {}).get(SOURCE_MD5)
    if not value:
        return None
    try:
        digest = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return digest if len(digest) == 16 else None


def restore_metadata(src: ObjectInfo, verified: bool) -> dict[str, str]:
    """The blob's own metadata back, without the backup's `crosscloud-*` bookkeeping.

    A copy the backup marked unverified (its checksum did not match after upload) is not
    restored: its bytes are not known to be the blob's.
    """
    if UNVERIFIED in (src.metadata or {}):
        raise CrossCloudError(f"the backup copy {src.key!r} is marked unverified (its checksum did not match "
                              "after upload); the next backup run replaces it", code="unverified_backup",
                              status=409)
    return user_metadata(src.metadata)


class RestorePlanner:
    """Maps backup keys (`<backup prefix><name>`) to blobs (`<to_prefix><name>`) and decides."""

    def __init__(self, source: ObjectStore, dest: ObjectStore, *, backup: ObjectStore, backup_prefix: str,
                 prefix: str = "", to_prefix: str = "", overwrite: bool = False, empty_hint: str = ""):
        """`source` lists and reads the versions being restored (a point-in-time view or the
        current backup); `backup` is the current backup, where the index lives."""
        self.source, self.dest, self.backup = source, dest, backup
        self.backup_prefix, self.prefix, self.to_prefix = backup_prefix, prefix, to_prefix
        self.overwrite, self.empty_hint = overwrite, empty_hint
        self.source_prefix = backup_prefix + prefix
        self._blobs: InOrderLookup[Blob] | None = None  # name -> the blob at the target
        self._index: InOrderLookup[index.Entry] | None = None  # name -> (backup copy ETag, source ETag)
        self._checking: dict[str, Blob] = {}  # CHECK decisions in flight (bounded by the run's slots)
        self._lock = threading.Lock()

    def prepare(self) -> None:
        """Open the target listing and the backup index (a cache: missing costs HEADs); both
        are read as the backup listing goes."""
        self._blobs = InOrderLookup(self._target_blobs(), self.dest.sort_key)
        # The backup wrote its index (one file, or a fan-out run's segments) in its source's
        # order, and its source is this container.
        entries = index.latest(self.backup, self.backup_prefix, self.dest.listing_order, self.dest.sort_key,
                               within=self.prefix)
        self._index = InOrderLookup(entries, self.dest.sort_key)

    def _target_blobs(self) -> Iterator[tuple[str, Blob]]:
        start = len(self.to_prefix)
        with prefetch(self.dest.list_pages(self.to_prefix + self.prefix)) as pages:
            for page in pages:
                yield from ((info.key[start:], (info.size, info.etag)) for info in page.items)

    def close(self) -> None:
        """End the walks (the target listing's prefetch thread, the index download) now."""
        for lookup in (self._blobs, self._index):
            if lookup is not None:
                lookup.close()

    def relative(self, key: str) -> str:
        return key[len(self.backup_prefix):]

    def dest_key(self, key: str) -> str:
        return self.to_prefix + self.relative(key)

    def classify(self, info: ObjectInfo) -> Decision:
        """Called from one thread, in the backup listing's order."""
        if self._blobs is None or self._index is None:
            raise RuntimeError("RestorePlanner.prepare() must run first")
        name = self.relative(info.key)
        if name.startswith(RESERVED):
            return Decision(Action.IGNORE)  # the backup's lease and index, never data
        target = self.to_prefix + name
        if len(target) > MAX_BLOB_NAME:
            return Decision(Action.REFUSE, f"the blob name would be {len(target)} characters; Azure allows at "
                                           f"most {MAX_BLOB_NAME}")
        blob, known = self._blobs.find(name), self._index.find(name)
        if blob is None:
            return CREATE
        size, etag = blob
        if size != info.size:
            return self._differs(etag)
        if known is not None and known[0] == info.etag and known[1] == etag:
            return SKIP  # the blob is the very one this backup copy was made from
        with self._lock:
            self._checking[info.key] = blob
        return CHECK

    def check(self, info: ObjectInfo) -> Decision:
        """HEAD the version: SKIP if the blob holds its bytes, else leave it (or replace it)."""
        with self._lock:
            size, etag = self._checking.pop(info.key)
        version = self.source.stat(info.key)
        metadata = version.metadata or {}
        if metadata.get(SOURCE_ETAG) == etag:
            return SKIP
        recorded = recorded_md5(metadata)
        if recorded is not None and size == version.size:
            try:
                blob = self.dest.stat(self.dest_key(info.key))
            except NotFound:  # deleted meanwhile: create it, if it is still absent then
                return CREATE
            if blob.content_md5 == recorded:
                return SKIP
            etag = blob.etag
        return self._differs(etag)

    def _differs(self, blob_etag: str) -> Decision:
        if self.overwrite:
            return Decision(Action.COPY, if_match=blob_etag)
        return Decision(Action.KEEP, "the blob differs from the backup version; --overwrite replaces it")

    def learn(self, key: str, dest_etag: str, source_etag: str | None) -> None:
        """Nothing to remember: restore writes no index."""

    def save_index(self, run_id: str) -> None:
        """Restore writes nothing to the backup."""

    def on_empty(self) -> None:
        raise BadRequest(f"nothing to restore: the backup holds no objects under prefix {self.prefix!r}"
                         f"{self.empty_hint} (check prefix / --prefix, as_of / --as-of and BACKUP_S3_PREFIX)",
                         code="empty_backup")
