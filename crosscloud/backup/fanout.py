"""Fan-out backup (`BACKUP_FANOUT=queue`): plan a run into shards, one queue message each.

The planner takes the run lease (held, without a heartbeat, until the run's last shard ends
it, or `BACKUP_FANOUT_RUN_HOURS`), aborts incomplete uploads a killed run left, then lists
the source once and cuts it into key ranges of at most `BACKUP_SHARD_OBJECTS` objects and
`BACKUP_SHARD_MB` MiB, sending one message per shard to the Storage queue
`BACKUP_QUEUE_NAME` (identity-based connection `CROSSCLOUD_QUEUE__queueServiceUri`). Each
message also names the previous run's index segments that cover its range, found by walking
`index/segments.json` in step with the cut. Queue-triggered functions copy the shards
(shards.py); the plan (runstate.py) is written last, so a run completes only once both the
plan and every shard's result exist, whichever comes last. If planning fails after the lease
was taken, the plan is written all the same, marked `failed` with the error's name, before
the lease ends: every shard it queued then stops without copying and reports `cancelled`, a
shard already copying reports as usual, and the last report completes the run as failed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from crosscloud.backup.config import MIB, BackupConfig
from crosscloud.backup.lease import LEASE_NAME, Lease
from crosscloud.backup.range import KeyRange
from crosscloud.backup.report import BackupReport, utc_iso
from crosscloud.backup.runstate import SEGMENTS, RunPaths, finish_if_complete, get_json, put_json
from crosscloud.backup.shards import ShardTask, cancel
from crosscloud.errors import CrossCloudError, SettingError
from crosscloud.settings import Settings
from crosscloud.stores.base import ObjectStore

log = logging.getLogger("crosscloud.backup")
QUEUE_NAME = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")
MAX_MESSAGE = 48 * 1024  # the queue takes 64 KiB per message; base64 (the host's default) adds a third


@dataclass(frozen=True)
class FanoutConfig:
    shard_objects: int = 10_000
    shard_bytes: int = 8192 * MIB
    queue_name: str = "crosscloud-backup-shards"
    run_hours: int = 24

    @classmethod
    def from_settings(cls, settings: Settings) -> FanoutConfig:
        name = settings._get("BACKUP_QUEUE_NAME", cls.queue_name)  # noqa: SLF001 - the settings' own reader
        if not QUEUE_NAME.match(name):
            raise SettingError("app setting BACKUP_QUEUE_NAME is malformed: expected a queue name like "
                               "crosscloud-backup-shards (3-63 lowercase letters, digits and single hyphens)")
        return cls(shard_objects=settings.int_setting("BACKUP_SHARD_OBJECTS", cls.shard_objects),
                   shard_bytes=settings.int_setting("BACKUP_SHARD_MB", 8192) * MIB, queue_name=name,
                   run_hours=settings.int_setting("BACKUP_FANOUT_RUN_HOURS", cls.run_hours))


def enabled(settings: Settings | None = None) -> bool:
    """BACKUP_FANOUT: `queue` fans runs out over the shard queue; unset or `off` runs in-process."""
    value = (settings or Settings())._get("BACKUP_FANOUT", "off").lower()  # noqa: SLF001
    if value not in ("off", "queue"):
        raise SettingError("app setting BACKUP_FANOUT is malformed: expected queue, or off (the default)")
    return value == "queue"


class _Segments:
    """The previous run's index segments, walked in step with the shards being cut."""

    def __init__(self, dest: ObjectStore, config: BackupConfig, order_name: str, order: Any):
        pointer = get_json(dest, config.prefix + SEGMENTS)
        usable = isinstance(pointer, dict) and pointer.get("order") == order_name
        self._items = [(KeyRange.from_json(s), s["key"]) for s in pointer["segments"]] if usable else []
        self._order, self._at = order, 0

    def covering(self, wanted: KeyRange) -> tuple[tuple[KeyRange, str], ...]:
        while self._at < len(self._items) and wanted.start_after is not None and \
                self._items[self._at][0].end is not None and \
                self._order(self._items[self._at][0].end) <= self._order(wanted.start_after):
            self._at += 1  # wholly before this shard (and so before every later one)
        found = []
        for item in self._items[self._at:]:
            if not item[0].overlaps(wanted, self._order):
                break
            found.append(item)
        return tuple(found)


def cut(source: ObjectStore, config: BackupConfig, fan: FanoutConfig,
        deadline: float) -> Iterator[tuple[KeyRange, int, int]]:
    """The source's key ranges in listing order: (range, objects, bytes); stops at `deadline`."""
    start: str | None = None
    count = size = 0
    last: str | None = None
    for page in source.list_pages(config.source_prefix, page_size=5000):
        for info in page.items:
            count, size, last = count + 1, size + info.size, info.key
            if count >= fan.shard_objects or size >= fan.shard_bytes:
                yield KeyRange(start, last), count, size
                start, count, size = last, 0, 0
        if time.monotonic() > deadline:
            if count:
                yield KeyRange(start, last), count, size
            raise TimeoutError(last)
    if count or start is None:
        yield KeyRange(start, None), count, size  # the last shard is open-ended: new keys land in it


class PlanFailed(CrossCloudError):
    """Planning failed; the run is recorded as failed, so the shards it queued stop at once."""

    code = "backup_plan_failed"


def plan_run(source: ObjectStore, dest: ObjectStore, queue: Any, config: BackupConfig, fan: FanoutConfig, *,
             max_seconds: float | None = None, run_id: str | None = None) -> dict[str, Any]:
    """Plan one fan-out run and enqueue its shards; returns the plan. Raises `LeaseHeld` if a
    run (fan-out or not) holds the lease, `PlanFailed` if planning failed after the lease."""
    run_id = run_id or f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    deadline = started + (max_seconds if max_seconds is not None else config.time_budget_s)
    Lease(dest, config.prefix + LEASE_NAME, run_id, fan.run_hours * 3600).acquire(heartbeat=False)
    report = BackupReport(run_id, source.describe(), f"{dest.describe()} prefix {config.prefix}",
                          utc_iso(dt.datetime.now(dt.UTC)))
    plan: dict[str, Any] = {"run_id": run_id, "source": report.source, "destination": report.destination,
                            "started": report.started, "order": source.listing_order, "status": "planned",
                            "stop_reason": None, "objects": 0, "bytes": 0}
    queued: list[tuple[ShardTask, Future[Any]]] = []
    try:
        plan["incomplete_uploads_aborted"] = dest.cleanup(config.prefix)
        _enqueue(source, dest, queue, config, fan, deadline, plan, queued)
        plan["shards"] = len(queued)
        plan["planned_s"] = round(time.monotonic() - started, 3)
        put_json(dest, RunPaths(config.prefix, run_id).plan, plan, create=True)
    except BaseException as exc:
        recorded = _record_failure(dest, config, plan, queued, exc)
        if not isinstance(exc, Exception):
            raise  # interrupted (Ctrl-C, the host stopping): recorded, then as it was
        if not recorded:  # the plan was written after all (only its answer was lost): the run goes on
            finish_if_complete(dest, config.prefix, run_id)
            return get_json(dest, RunPaths(config.prefix, run_id).plan)
        raise PlanFailed(f"backup {run_id} {plan['stop_reason']}; the run's report follows once they have: "
                         f".crosscloud/runs/{run_id}/report.json under the backup prefix",
                         status=exc.status if isinstance(exc, CrossCloudError) else 500) from exc
    log.info("backup %s planned: %d shards, %d objects, %.1f MiB in %.1f s", run_id, plan["shards"],
             plan["objects"], plan["bytes"] / MIB, plan["planned_s"])
    finish_if_complete(dest, config.prefix, run_id)  # shards that finished before the plan was written
    return plan


def _enqueue(source: ObjectStore, dest: ObjectStore, queue: Any, config: BackupConfig, fan: FanoutConfig,
             deadline: float, plan: dict[str, Any], queued: list[tuple[ShardTask, Future[Any]]]) -> None:
    """Cut the source and send one message per shard (appended to `queued` as sent); a failed
    send stops the cut at once and is raised once every send in flight has ended."""
    segments = _Segments(dest, config, plan["order"], source.sort_key)
    checked = 0
    with ThreadPoolExecutor(8, "backup-enqueue") as senders:
        try:
            for key_range, count, size in cut(source, config, fan, deadline):
                n = len(queued)
                task = ShardTask(plan["run_id"], n, key_range, count, size, segments.covering(key_range))
                body = task.to_message()
                if len(body.encode()) > MAX_MESSAGE:  # index hints are optional: HEADs instead
                    body = ShardTask(plan["run_id"], n, key_range, count, size).to_message()
                queued.append((task, senders.submit(queue.send_message, body)))
                plan["objects"], plan["bytes"] = plan["objects"] + count, plan["bytes"] + size
                while checked < len(queued) and (queued[checked][1].done() or len(queued) - checked > 64):
                    queued[checked][1].result()  # raises a failed send
                    checked += 1
        except TimeoutError:
            plan["stop_reason"] = (f"planning reached its time budget after {plan['objects']} objects in "
                                   f"{len(queued)} shards; the next run plans from the start again")
    for _, sent in queued[checked:]:
        sent.result()


def _record_failure(dest: ObjectStore, config: BackupConfig, plan: dict[str, Any],
                    queued: list[tuple[ShardTask, Future[Any]]], exc: BaseException) -> bool:
    """Record the run as failed (`plan.json`, status `failed`, the error's name) while it still
    holds the lease, so every shard it queued stops without copying and reports `cancelled`;
    the last report completes the run (runstate.py) and ends the lease. False if the plan had
    been written after all (its put failed only on the way back)."""
    wait([sent for _, sent in queued])
    unsent = [task for task, sent in queued if sent.cancelled() or sent.exception() is not None]
    why = f"{type(exc).__name__}: {exc.message}" if isinstance(exc, CrossCloudError) else type(exc).__name__
    paths = RunPaths(config.prefix, plan["run_id"])
    plan.update(status="failed", error=type(exc).__name__, shards=len(queued),
                stop_reason=f"failed while planning, after {len(queued) - len(unsent)} shard(s) were queued "
                            f"({why}); they stop without copying")
    log.error("backup %s %s", plan["run_id"], plan["stop_reason"])
    try:
        if not put_json(dest, paths.plan, plan, create=True):
            written = get_json(dest, paths.plan)
            if isinstance(written, dict) and written.get("status") != "failed":
                log.warning("backup %s: its plan was written after all; the run goes on", plan["run_id"])
                return False
        for task in unsent:  # perhaps queued all the same: such a message finds its result and stops
            cancel(dest, config, task, "its message may not have been queued")
        finish_if_complete(dest, config.prefix, plan["run_id"])  # no shard queued: the run ends here
    except CrossCloudError as also:
        log.error("backup %s: could not record the failed plan (%s); the shards it queued copy their ranges "
                  "and its lease expires on its own (BACKUP_FANOUT_RUN_HOURS)", plan["run_id"], also.message)
        if len(unsent) == len(queued):  # nothing was queued: no shard can be left running
            with contextlib.suppress(CrossCloudError):
                Lease(dest, config.prefix + LEASE_NAME, plan["run_id"], 1).end_if_mine()
    return True


def wait_for_report(dest: ObjectStore, config: BackupConfig, plan: dict[str, Any], timeout: float,
                    progress: Callable[[int, int], None] | None = None) -> dict[str, Any] | None:
    """Poll for the run's report until `timeout`; None if the run has not completed by then."""
    paths = RunPaths(config.prefix, plan["run_id"])
    deadline = time.monotonic() + timeout
    while True:
        report = get_json(dest, paths.report)
        if report is not None or time.monotonic() > deadline:
            return report
        if progress is not None:
            done = sum(1 for page in dest.list_pages(paths.shards) for i in page.items if i.key.endswith(".json"))
            progress(done, plan["shards"])
        time.sleep(1.0)


def plan_configured(settings: Settings | None = None, *, max_seconds: float | None = None) -> dict[str, Any]:
    """Plan a fan-out run of the configured backup (timer, `POST /api/backup`, the CLI)."""
    from crosscloud.backup.shards import configured
    from crosscloud.stores import factory

    settings = settings or Settings()
    source, dest, config = configured(settings)
    fan = FanoutConfig.from_settings(settings)
    source = factory.azure_store(settings, bulk=True)  # listing only, but one long pass: the bulk budget
    return plan_run(source, dest, factory.shard_queue(settings, fan.queue_name), config, fan, max_seconds=max_seconds)
