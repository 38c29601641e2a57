"""One run of the copy engine: schedules, budgets, leases and reports; a planner and the copier
do the rest. Backup and restore are this one loop with different planners.

A backup (Azure container -> S3 prefix, `BackupPlanner`, leased): takes the run lease
(`lease.py`) and aborts uploads a killed run left; streams the source listing through the
planner (copy, skip, or HEAD first); hands copies to the copier, where one failing object
never stops the others; stops scheduling when the budget runs out, the lease is lost or
reaches the expiry it last secured, a fatal error is seen, or the clouds stop answering;
in-flight copies finish or are cut at budget + grace and left pending. A run is complete
only when nothing failed and nothing is pending; the next run picks up the rest.

A restore (`restore.py`) is the same loop from the S3 backup (a point-in-time view) to the
container, with `RestorePlanner` and no lease. Nothing is ever deleted at the destination;
each object is written all or nothing, so overlapping writers can only leave a consistent
copy of some source version, which the next run compares and fixes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from crosscloud.backup.config import MIB, BackupConfig
from crosscloud.backup.copier import Copier, Md5Of, Metadata, Outcome, Result, fatal, outage, reason
from crosscloud.backup.lease import LEASE_NAME, Lease
from crosscloud.backup.metadata import backup_metadata
from crosscloud.backup.plan import Action, BackupPlanner, Decision, Planner
from crosscloud.backup.range import KeyRange
from crosscloud.backup.report import (
    MAX_LISTED_FAILURES,
    BackupReport,
    Counters,
    Failure,
    Progress,
    start_progress,
    utc_iso,
)
from crosscloud.backup.walk import started
from crosscloud.errors import CrossCloudError
from crosscloud.settings import Settings
from crosscloud.stores.base import ObjectInfo, ObjectStore, Page

log = logging.getLogger("crosscloud.backup")
REPORT_LOGGER = "crosscloud.backup.report"  # the one JSON line per run
HTTP_TIME_BUDGET_S = 190  # scheduling budget of an HTTP-triggered run; + grace stays under the 230 s cut
OUTAGE_STOP_AFTER = 3  # consecutive objects failing because a cloud does not answer: stop the run


class _Stop(Exception):
    """Internal: the run stops scheduling (budget, lease, fatal error)."""


class CopyRun:
    """One run. `run()` returns the report; it raises only if the run could not start."""

    kind = "backup"
    report_logger = REPORT_LOGGER  # the one JSON line per run (a fan-out shard's goes elsewhere)

    def __init__(self, source: ObjectStore, dest: ObjectStore, config: BackupConfig, planner: Planner, *,
                 metadata: Metadata, content_md5: Md5Of | None = None, lease_key: str | None = None,
                 destination: str, dry_run: bool = False, run_id: str | None = None,
                 progress: Progress | None = None, key_range: KeyRange | None = None):
        self.source, self.dest, self.config, self.dry_run = source, dest, config, dry_run
        self.run_id = run_id or f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        self.progress, self.planner, self.lease_key, self.key_range = progress, planner, lease_key, key_range
        self.counters = Counters()
        self.copier = Copier(source, dest, config, dest_key=planner.dest_key, metadata=metadata,
                             content_md5=content_md5, learn=planner.learn, stopping=self._stopping,
                             deadline=lambda: self._deadline, counters=self.counters)
        self._lock = threading.Lock()
        self._lease: Lease | None = None
        self._deadline = 0.0
        self._started = 0.0
        self._outages = 0  # consecutive copies that failed because a cloud did not answer
        self._done = threading.Event()
        self.report = BackupReport(run_id=self.run_id, source=source.describe(), destination=destination,
                                   started=utc_iso(dt.datetime.now(dt.UTC)), dry_run=dry_run)

    def run(self) -> BackupReport:
        self._started = time.monotonic()
        self._deadline = self._started + self.config.time_budget_s
        ticker = start_progress(self.progress, self.counters, self._started, self._done, self.kind)
        try:
            with ThreadPoolExecutor(2, f"{self.kind}-background") as background:
                # The source's first page is listed while the lease is taken (a listing writes
                # nothing), the destination while the source's first page is on its way.
                pages = started(self._source_pages(), background)
                if not self.dry_run and self.lease_key is not None:
                    self._lease = Lease(self.dest, self.lease_key, self.run_id, self.config.lease_ttl_s).acquire()
                self._schedule(background.submit(self._prepare_destination), pages)
            if self.counters.listed == 0 and self.report.stop_reason is None:
                self.planner.on_empty()
            if not self.dry_run and not (self._lease is not None and self._lease.lost.is_set()):
                self.planner.save_index(self.run_id)
        finally:
            self.planner.close()  # its listing threads end now, not when the run is collected
            if self._lease is not None:
                self._lease.release()
            self._done.set()
            if ticker is not None:
                ticker.join()
        return self._finish()

    def _prepare_destination(self) -> None:
        # Only the lease holder may abort uploads under the prefix; a shard's run does it for its shards.
        if self._lease is not None and self.key_range is None:
            self.report.incomplete_uploads_aborted = self.dest.cleanup(self.config.prefix)
        self.planner.prepare()

    def _schedule(self, destination_ready, pages: Iterator[Page]) -> None:  # noqa: ANN001 - a Future[None]
        # Slots bound the queued work, so a huge listing never turns into millions of futures.
        slots = threading.BoundedSemaphore(2 * (self.config.concurrency + self.config.checkers))
        with ThreadPoolExecutor(self.config.concurrency, f"{self.kind}-copy") as copies, \
                ThreadPoolExecutor(self.config.checkers, f"{self.kind}-check") as checks:  # exits first
            listed_any = False
            try:
                # Modest pages: copying starts after the first one, not after 5,000 blobs.
                for page in pages:
                    if not listed_any:
                        destination_ready.result()  # raises what listing the destination raised
                    listed_any = True
                    for info in page.items:
                        decision = self.planner.classify(info)
                        if decision.action is Action.IGNORE:
                            continue
                        self.counters.add(listed=1)
                        if self._stopping():
                            raise _Stop
                        if decision.action in (Action.COPY, Action.CHECK):
                            slots.acquire()
                            pool = checks if decision.action is Action.CHECK else copies
                            pool.submit(self._handle, info, decision, slots, copies)
                            continue
                        self._decided(info, decision)
                        self.counters.add(done=1)
                destination_ready.result()  # also when the source had nothing to list
                self.counters.add(listing=-1)
            except _Stop:
                pass
            except CrossCloudError as exc:
                if not listed_any:
                    raise  # nothing happened yet: the caller gets the error itself
                self._stop(f"source listing failed: {exc.message}")

    def _source_pages(self) -> Iterator[Page]:
        prefix, scope = self.planner.source_prefix, self.key_range
        if scope is None:
            return self.source.list_pages(prefix, page_size=1000)
        return scope.pages(self.source.list_pages(prefix, page_size=1000, start_after=scope.start_after),
                           self.source.sort_key)

    def _decided(self, info: ObjectInfo, decision: Decision) -> None:
        """Count a decision that needs no copy."""
        if decision.action is Action.REFUSE:
            self._fail(info.key, decision.reason)
        elif decision.action is Action.KEEP:
            log.info("%s: %r left alone: %s", self.kind, info.key, decision.reason)
            self._count(skipped_newer=1)
        else:
            self._count(skipped=1)

    def _handle(self, info: ObjectInfo, decision: Decision, slots: threading.BoundedSemaphore,
                copies: ThreadPoolExecutor) -> None:
        """Check (HEAD) if asked, then copy on the copy pool (so at most BACKUP_CONCURRENCY copies
        run); runs on a worker and never raises."""
        handed_over = False
        try:
            if self._stopping():
                return self._record(info, Outcome(Result.PENDING, info.size))
            if decision.action is Action.CHECK:
                try:
                    decision = self.planner.check(info)
                except Exception as exc:
                    why = f"could not compare with the destination: {reason(exc)}"
                    return self._record(info, Outcome(Result.FAILED, info.size, why, fatal(exc), outage(exc)))
                if decision.action is not Action.COPY:
                    return self._decided(info, decision)
                copies.submit(self._handle, info, decision, slots, copies)  # the slot goes with it
                handed_over = True
                return None
            self.counters.add(bytes_planned=info.size)
            if self.dry_run:
                return self._count(copied=1, bytes_copied=info.size)
            if not self._fits_budget(info):
                return self._record(info, Outcome(Result.PENDING, info.size))
            return self._record(info, self.copier.copy(info, decision))
        finally:
            if not handed_over:
                self.counters.add(done=1)
                slots.release()

    def _fits_budget(self, info: ObjectInfo) -> bool:
        """A copy that cannot finish before the deadline at a cautious rate is not started."""
        remaining = self._deadline - time.monotonic()
        return info.size <= remaining * self.config.assumed_mib_s * MIB

    # --- bookkeeping -----------------------------------------------------------------
    def _record(self, info: ObjectInfo, outcome: Outcome) -> None:
        if outcome.result is Result.COPIED:
            self._outages = 0
            self._count(copied=1, bytes_copied=outcome.size)
        elif outcome.result is Result.VANISHED:
            self._count(skipped=1)
        elif outcome.result is Result.CONFLICT:  # the destination changed meanwhile: left alone
            self._count(skipped_newer=1)
        elif outcome.result is Result.PENDING:
            self._count(pending=1, pending_bytes=outcome.size)
        else:
            self._fail(info.key, outcome.reason)
            if outcome.fatal:
                self._stop(f"stopped: {outcome.reason}")
            elif outcome.outage:
                with self._lock:
                    self._outages += 1
                    down = self._outages >= OUTAGE_STOP_AFTER
                if down:
                    self._stop(f"stopped: {OUTAGE_STOP_AFTER} objects in a row failed because a cloud did not "
                               f"answer (last: {outcome.reason})")

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, value in deltas.items():
                setattr(self.report, name, getattr(self.report, name) + value)

    def _fail(self, key: str, why: str) -> None:
        log.warning("%s: %r failed: %s", self.kind, key, why)
        with self._lock:
            self.report.failed_count += 1
            if len(self.report.failed) < MAX_LISTED_FAILURES:
                self.report.failed.append(Failure(key, why))

    def _stop(self, why: str) -> None:
        with self._lock:
            if self.report.stop_reason is None:
                self.report.stop_reason = why
                log.warning("%s %s: %s; in-flight copies finish, nothing new starts", self.kind, self.run_id, why)

    def _stopping(self) -> bool:
        if self.report.stop_reason is not None:
            return True
        lease = self._lease
        if time.monotonic() >= self._deadline:
            self._stop(f"time budget of {self.config.time_budget_s:.0f} s reached")
        elif lease is not None and lease.lost.is_set():
            self._stop("the run lease was lost to another run")
        elif lease is not None and time.time() >= lease.expires:  # its own clock, not the heartbeat's
            self._stop("the run lease reached the expiry it last secured (renewals failed)")
        return self.report.stop_reason is not None

    def _finish(self) -> BackupReport:
        report = self.report
        report.close(time.monotonic() - self._started)
        line = json.dumps({"event": f"{self.kind}_report", **report.as_json()}, ensure_ascii=False)
        logging.getLogger(self.report_logger).log(logging.INFO if report.ok else logging.WARNING, "%s", line)
        return report


class Backup(CopyRun):
    """The backup: source objects to `<prefix><key>`, with the run lease and the index."""

    def __init__(self, source: ObjectStore, dest: ObjectStore, config: BackupConfig, *,
                 dry_run: bool = False, run_id: str | None = None, progress: Progress | None = None):
        super().__init__(source, dest, config, BackupPlanner(source, dest, config), metadata=backup_metadata,
                         lease_key=config.prefix + LEASE_NAME, dry_run=dry_run, run_id=run_id,
                         destination=f"{dest.describe()} prefix {config.prefix}", progress=progress)


def run_configured(settings: Settings | None = None, *, dry_run: bool = False,
                   progress: Progress | None = None, max_seconds: float | None = None) -> BackupReport:
    """The configured backup: the app's Azure container into the backup S3 bucket/prefix."""
    from crosscloud.stores import factory  # SDK clients are built on first use, never at import

    settings = settings or Settings()
    config = BackupConfig.from_settings(settings)
    if max_seconds is not None:
        config = replace(config, time_budget_s=min(config.time_budget_s, max_seconds))
    source = factory.azure_store(settings, chunk_size=config.part_size, bulk=True)
    dest = factory.s3_store(settings, backup=True)
    return Backup(source, dest, config, dry_run=dry_run, progress=progress).run()
