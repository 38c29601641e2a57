"""Backup: copy new and changed objects of one store into a prefix of another.

Written once over `ObjectStore` (like rclone's copy over its backends) and configured
Azure container -> S3 prefix by the settings. One run:

1. takes the run lease in the destination (`lease.py`) and aborts incomplete uploads a
   killed run left under the prefix (only the lease holder may, so no live upload is hit);
2. lists the destination prefix once (key -> size, ETag) and streams the source listing:
   absent or a different size means copy; the same size means compare the source ETag with
   the one the copy was made from: known from the backup index (`index.py`) while
   the destination ETag is unchanged, else from a HEAD of the object's
   `crosscloud-source-etag` metadata (HEADs run concurrently);
3. copies through `VerifyingStream` (size, per-part SHA-256 checked by S3 before the upload
   completes, Content-MD5 of the source) with object-level retries and backoff on top of
   the SDKs' request retries; one failing object never stops the others;
4. stops scheduling when the time budget or the lease runs out (in-flight copies finish)
   and reports the run as incomplete; the next run picks up where this one stopped.

Nothing is ever deleted at the destination. Each object is written all or nothing with its
metadata, so overlapping writers (a run presumed dead and its successor) can only leave a
consistent copy of some source version, which the next run compares and fixes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

from crosscloud.backup import index
from crosscloud.backup.config import MIB, RESERVED, BackupConfig, MemoryBudget
from crosscloud.backup.lease import LEASE_NAME, Lease
from crosscloud.backup.report import MAX_LISTED_FAILURES, BackupReport, Counters, Failure, utc_iso
from crosscloud.backup.stream import VerifyingStream, b64
from crosscloud.errors import (
    CrossCloudError,
    FederationError,
    IntegrityError,
    NotFound,
    SettingError,
)
from crosscloud.settings import Settings
from crosscloud.stores.base import MAX_KEY_BYTES, ObjectInfo, ObjectStore, PutOptions

log = logging.getLogger("crosscloud.backup")
REPORT_LOGGER = "crosscloud.backup.report"  # the one JSON line per run

SOURCE_ETAG = "crosscloud-source-etag"
SOURCE_MODIFIED = "crosscloud-source-last-modified"
SOURCE_MD5 = "crosscloud-source-content-md5"
UNVERIFIED = "crosscloud-unverified"
HTTP_TIME_BUDGET_S = 200  # an HTTP-triggered run must answer before the 230 s front-end timeout

Progress = Callable[[dict[str, int], float], None]


class _Stop(Exception):
    """Internal: the run stops scheduling (budget, lease, fatal error)."""


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, IntegrityError):
        return True
    if isinstance(exc, CrossCloudError):
        return exc.status >= 500 and not _fatal(exc)
    return True  # unexpected exception types: a retry is cheap, the reason gets reported


def _fatal(exc: Exception) -> bool:
    """Errors every other object would hit too (permissions, trust, settings): stop the run."""
    return isinstance(exc, (FederationError, SettingError)) or (
        isinstance(exc, CrossCloudError) and exc.code.endswith(("_forbidden", "_no_such_bucket",
                                                                  "_container_not_found")))


def _reason(exc: Exception) -> str:
    if isinstance(exc, CrossCloudError):
        return exc.message
    return f"unexpected {type(exc).__name__}"  # never str(exc): SDK errors can echo URLs with SAS


class Backup:
    """One run. `run()` returns the report; it raises only if the run could not start."""

    def __init__(self, source: ObjectStore, dest: ObjectStore, config: BackupConfig, *,
                 dry_run: bool = False, run_id: str | None = None, progress: Progress | None = None):
        self.source, self.dest, self.config, self.dry_run = source, dest, config, dry_run
        self.run_id = run_id or f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        self.progress = progress
        self.counters = Counters()
        self.memory = MemoryBudget(config.memory_budget)
        self._lock = threading.Lock()
        self._lease: Lease | None = None
        self._listing: dict[str, tuple[int, str]] = {}  # destination: key -> (size, ETag)
        self._known: dict[str, tuple[str, str]] = {}  # key -> (destination ETag, source ETag)
        self._index_carry: dict[str, tuple[str, str]] = {}  # index entries outside this run's scope
        self._deadline = 0.0
        self._started = 0.0
        self._done = threading.Event()
        self.report = BackupReport(run_id=self.run_id, source=source.describe(),
                                   destination=f"{dest.describe()} prefix {config.prefix}",
                                   started=utc_iso(dt.datetime.now(dt.UTC)), dry_run=dry_run)

    # --- the run ---------------------------------------------------------------------
    def run(self) -> BackupReport:
        self._started = time.monotonic()
        self._deadline = self._started + self.config.time_budget_s
        ticker = self._start_progress()
        try:
            if not self.dry_run:
                self._lease = Lease(self.dest, self.config.prefix + LEASE_NAME, self.run_id,
                                    self.config.lease_ttl_s).acquire()
            # The destination is listed while the source's first page is on its way.
            with ThreadPoolExecutor(1, "backup-dest") as background:
                self._schedule(background.submit(self._prepare_destination))
            self._save_index()
        finally:
            if self._lease is not None:
                self._lease.release()
            self._done.set()
            if ticker is not None:
                ticker.join()
        return self._finish()

    def _prepare_destination(self) -> None:
        if not self.dry_run:
            self.report.incomplete_uploads_aborted = self.dest.cleanup(self.config.prefix)
        self._listing = self._destination_listing()
        self._load_index()

    def _destination_listing(self) -> dict[str, tuple[int, str]]:
        """Key (relative to the prefix) -> (size, ETag), one listing; the reserved area left out."""
        prefix, listing = self.config.prefix, {}
        for info in self.dest.list(prefix + self.config.source_prefix):
            relative = info.key[len(prefix):]
            if not relative.startswith(RESERVED):
                listing[relative] = (info.size, info.etag)
        return listing

    def _load_index(self) -> None:
        """Index entries whose destination ETag the listing still shows (the others are stale)."""
        entries = index.load(self.dest, self.config.prefix + index.INDEX_NAME)
        scope = self.config.source_prefix
        for key, (dest_etag, source_etag) in entries.items():
            if not key.startswith(scope):
                self._index_carry[key] = (dest_etag, source_etag)
            elif key in self._listing and self._listing[key][1] == dest_etag:
                self._known[key] = (dest_etag, source_etag)

    def _save_index(self) -> None:
        if self.dry_run or (self._lease is not None and self._lease.lost.is_set()):
            return
        with self._lock:
            entries = {**self._index_carry, **self._known}
        meta = {"run_id": self.run_id, "written": utc_iso(dt.datetime.now(dt.UTC))}
        try:
            index.save(self.dest, self.config.prefix + index.INDEX_NAME,
                              ((k, d, s) for k, (d, s) in sorted(entries.items())), meta, self.config.part_size)
        except CrossCloudError as exc:  # the next run falls back to HEADs; the copies stand
            log.warning("backup %s could not write its index: %s", self.run_id, exc.message)

    def _learn(self, key: str, dest_etag: str, source_etag: str | None) -> None:
        with self._lock:
            if source_etag:
                self._known[key] = (dest_etag, source_etag)
            else:
                self._known.pop(key, None)

    def _schedule(self, destination_ready: Future[None]) -> None:
        # Slots bound the queued work, so a huge listing never turns into millions of futures.
        slots = threading.BoundedSemaphore(2 * (self.config.concurrency + self.config.checkers))
        with ThreadPoolExecutor(self.config.concurrency, "backup-copy") as copies, \
                ThreadPoolExecutor(self.config.checkers, "backup-check") as checks:  # exits first
            listed_any = False
            try:
                # Modest pages: copying starts after the first one, not after 5,000 blobs.
                for page in self.source.list_pages(self.config.source_prefix, page_size=1000):
                    if not listed_any:
                        destination_ready.result()  # raises what listing the destination raised
                    listed_any = True
                    for info in page.items:
                        self.counters.add(listed=1)
                        self._check_stop()
                        action = self._classify(info)
                        if action is None:
                            self.counters.add(done=1)
                            continue
                        slots.acquire()
                        if action == "check":
                            checks.submit(self._check, info, copies, slots)
                        else:
                            self._submit_copy(copies, info, slots)
                destination_ready.result()  # also when the source had nothing to list
                self.counters.add(listing=-1)
            except _Stop:
                pass
            except CrossCloudError as exc:
                if not listed_any:
                    raise  # nothing happened yet: the caller gets the error itself
                self._stop(f"source listing failed: {exc.message}")

    def _classify(self, info: ObjectInfo) -> str | None:
        """'copy', 'check' (same size: HEAD decides) or None (skipped, failed)."""
        dest_key = self.config.prefix + info.key
        if info.key.startswith(RESERVED):
            self._fail(info.key, f"the name maps into the reserved {RESERVED} area of the destination prefix")
            return None
        if len(dest_key.encode("utf-8")) > MAX_KEY_BYTES:
            self._fail(info.key, f"the destination key is {len(dest_key.encode('utf-8'))} bytes in UTF-8; "
                                 f"S3 allows at most {MAX_KEY_BYTES}")
            return None
        size, dest_etag = self._listing.get(info.key, (None, None))
        if size is None or size != info.size:
            return "copy"
        known = self._known.get(info.key)
        if known is not None and known[0] == dest_etag:
            if known[1] == info.etag:
                self._skip()
                return None
            return "copy"
        return "check"

    def _check(self, info: ObjectInfo, copies: ThreadPoolExecutor, slots: threading.BoundedSemaphore) -> None:
        try:
            if self._stopping():
                self._count_pending(info)
                return self._release(slots)
            try:
                current = self.dest.stat(self.config.prefix + info.key)
                recorded = (current.metadata or {}).get(SOURCE_ETAG)
                self._learn(info.key, current.etag, recorded)
            except NotFound:
                recorded = None
            if recorded == info.etag:
                self._skip()
                return self._release(slots)
        except Exception as exc:
            self._fail(info.key, f"could not read the destination copy: {_reason(exc)}", exc)
            if _fatal(exc):
                self._stop(f"stopped: {_reason(exc)}")
            return self._release(slots)
        self._submit_copy(copies, info, slots)
        return None

    def _submit_copy(self, copies: ThreadPoolExecutor, info: ObjectInfo,
                     slots: threading.BoundedSemaphore) -> None:
        if self.dry_run:
            with self._lock:
                self.report.copied += 1
                self.report.bytes_copied += info.size
            self.counters.add(bytes_planned=info.size)
            return self._release(slots)
        self.counters.add(bytes_planned=info.size)
        copies.submit(self._copy, info, slots)
        return None

    def _release(self, slots: threading.BoundedSemaphore) -> None:
        self.counters.add(done=1)
        slots.release()

    # --- one object ------------------------------------------------------------------
    def _copy(self, info: ObjectInfo, slots: threading.BoundedSemaphore) -> None:
        try:
            self._copy_with_retries(info)
        finally:
            self._release(slots)

    def _copy_with_retries(self, info: ObjectInfo) -> None:
        for attempt in range(1, self.config.attempts + 1):
            if self._stopping():
                return self._count_pending(info)
            try:
                size = self._copy_once(info)
            except NotFound:
                log.info("backup: %r disappeared from the source during the run; skipped", info.key)
                return self._skip()
            except Exception as exc:
                last = attempt == self.config.attempts
                if _fatal(exc):
                    self._fail(info.key, _reason(exc), exc)
                    return self._stop(f"stopped: {_reason(exc)}")
                if last or not _retryable(exc):
                    return self._give_up(info, exc)
                delay = min(self.config.retry_base_s * 2 ** (attempt - 1), 20) * random.uniform(0.5, 1.5)  # noqa: S311
                log.warning("backup: copy of %r failed (attempt %d/%d: %s); retrying in %.1f s",
                            info.key, attempt, self.config.attempts, _reason(exc), delay)
                time.sleep(max(0.0, min(delay, self._deadline - time.monotonic())))
                continue
            with self._lock:
                self.report.copied += 1
                self.report.bytes_copied += size
            return None
        return None

    def _copy_once(self, info: ObjectInfo, *, verified: bool = True) -> int:
        """Stream one object across; returns its size. Raises on any mismatch."""
        part = self.config.part_size_for(info.size)
        reserve = info.size if info.size < part else part * (self.config.part_concurrency + 2)
        with self.memory.reserve(reserve), self.source.open(info.key) as reader:
            src = reader.info  # the version actually read (the listing may be older)
            part = self.config.part_size_for(src.size)
            stream = VerifyingStream(reader.iter_chunks(), key=src.key, size=src.size, part_size=part,
                                     content_md5=src.content_md5,
                                     on_bytes=lambda n: self.counters.add(bytes_moved=n))
            options = PutOptions(content_type=src.content_type, metadata=self._metadata(src, verified),
                                 part_size=part, concurrency=self.config.part_concurrency,
                                 multipart_threshold=part, part_sha256=stream.part_sha256)
            result = self.dest.put(self.config.prefix + src.key, stream, src.size, options)
        self._learn(src.key, result.etag, None)  # known again once verified, below
        if not stream.finished:
            raise IntegrityError(f"the destination accepted {src.key!r} before it was read to the end")
        # S3 reports the SHA-256 it stored (whole object, or `composite-N` for multipart).
        if verified and result.checksum_sha256 is not None and not stream.matches(result.checksum_sha256):
            exc = IntegrityError(f"the destination's SHA-256 of {src.key!r} ({result.checksum_sha256}) "
                                 "differs from the bytes read")
            exc.visible = True  # type: ignore[attr-defined]
            raise exc
        self._learn(src.key, result.etag, src.etag if verified else None)
        return src.size

    def _metadata(self, src: ObjectInfo, verified: bool) -> dict[str, str]:
        metadata = {k.lower(): v for k, v in (src.metadata or {}).items()}
        metadata[SOURCE_MODIFIED] = utc_iso(src.last_modified)
        if src.content_md5:
            metadata[SOURCE_MD5] = b64(src.content_md5)
        if verified:
            metadata[SOURCE_ETAG] = src.etag
        else:
            metadata[UNVERIFIED] = "checksum mismatch after upload; the next run copies it again"
        return metadata

    def _give_up(self, info: ObjectInfo, exc: Exception) -> None:
        reason = _reason(exc)
        if getattr(exc, "visible", False):
            # A copy that failed verification after it became visible still carries the
            # source ETag; rewrite it without, so the next run does not take it as current.
            try:
                self._copy_once(info, verified=False)
            except Exception as again:
                reason += f"; marking the copy unverified failed too ({_reason(again)}), the next " \
                          "run may consider it current"
        self._fail(info.key, reason, exc)

    # --- bookkeeping -----------------------------------------------------------------
    def _skip(self) -> None:
        with self._lock:
            self.report.skipped += 1

    def _count_pending(self, info: ObjectInfo) -> None:
        with self._lock:
            self.report.pending += 1

    def _fail(self, key: str, reason: str, exc: Exception | None = None) -> None:
        log.warning("backup: %r failed: %s", key, reason)
        with self._lock:
            self.report.failed_count += 1
            if len(self.report.failed) < MAX_LISTED_FAILURES:
                self.report.failed.append(Failure(key, reason))

    def _stop(self, reason: str) -> None:
        with self._lock:
            if self.report.stop_reason is None:
                self.report.stop_reason = reason
                log.warning("backup %s: %s; in-flight copies finish, nothing new starts", self.run_id, reason)

    def _stopping(self) -> bool:
        if self.report.stop_reason is not None:
            return True
        if time.monotonic() >= self._deadline:
            self._stop(f"time budget of {self.config.time_budget_s:.0f} s reached")
        elif self._lease is not None and self._lease.lost.is_set():
            self._stop("the run lease was lost to another run")
        return self.report.stop_reason is not None

    def _check_stop(self) -> None:
        if self._stopping():
            raise _Stop

    def _start_progress(self) -> threading.Thread | None:
        if self.progress is None:
            return None
        progress = self.progress

        def tick() -> None:
            while not self._done.wait(0.2):
                progress(self.counters.snapshot(), time.monotonic() - self._started)
            progress(self.counters.snapshot(), time.monotonic() - self._started)

        thread = threading.Thread(target=tick, name="backup-progress", daemon=True)
        thread.start()
        return thread

    def _finish(self) -> BackupReport:
        report = self.report
        report.finished = utc_iso(dt.datetime.now(dt.UTC))
        report.duration_s = round(time.monotonic() - self._started, 3)
        report.throughput_mib_s = round(report.bytes_copied / MIB / report.duration_s, 2) \
            if report.duration_s > 0 else 0.0
        report.complete = report.stop_reason is None and report.pending == 0
        line = json.dumps({"event": "backup_report", **report.as_json()}, ensure_ascii=False)
        logging.getLogger(REPORT_LOGGER).log(logging.INFO if report.ok else logging.WARNING, "%s", line)
        return report


def run_configured(settings: Settings | None = None, *, dry_run: bool = False,
                   progress: Progress | None = None, max_seconds: float | None = None) -> BackupReport:
    """The configured backup: the app's Azure container into the backup S3 bucket/prefix."""
    from crosscloud import wiring  # SDK clients are built on first use, never at import

    settings = settings or Settings()
    config = BackupConfig.from_settings(settings)
    if max_seconds is not None:
        config = replace(config, time_budget_s=min(config.time_budget_s, max_seconds))
    source = wiring.azure_store(settings, chunk_size=config.part_size)
    dest = wiring.s3_store(settings, backup=True)
    return Backup(source, dest, config, dry_run=dry_run, progress=progress).run()
