"""Fan-out backup (`BACKUP_FANOUT=queue`): plan a run into shards, one queue message each.

The planner takes the run lease (held, without a heartbeat, until the run's last shard ends
it, or `BACKUP_FANOUT_RUN_HOURS`), aborts incomplete uploads a killed run left, then lists
the source once and cuts it into key ranges of at most `BACKUP_SHARD_OBJECTS` objects and
`BACKUP_SHARD_MB` MiB, sending one message per shard to the Storage queue
`BACKUP_QUEUE_NAME` (identity-based connection `CROSSCLOUD_QUEUE__queueServiceUri`). Each
message also names the previous run's index segments that cover its range, found by walking
`index/segments.json` in step with the cut. Queue-triggered functions copy the shards
(shards.py); the plan (runstate.py) is written last, so a run completes only once both the
plan and every shard's result exist, whichever comes last.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from crosscloud.backup.config import MIB, BackupConfig
from crosscloud.backup.lease import LEASE_NAME, Lease
from crosscloud.backup.range import KeyRange
from crosscloud.backup.report import BackupReport, utc_iso
from crosscloud.backup.runstate import SEGMENTS, RunPaths, finish_if_complete, get_json, put_json
from crosscloud.backup.shards import ShardTask
from crosscloud.errors import SettingError
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


def plan_run(source: ObjectStore, dest: ObjectStore, queue: Any, config: BackupConfig, fan: FanoutConfig, *,
             max_seconds: float | None = None, run_id: str | None = None) -> dict[str, Any]:
    """Plan one fan-out run and enqueue its shards; returns the plan. Raises `LeaseHeld` if a
    run (fan-out or not) holds the lease."""
    run_id = run_id or f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    deadline = started + (max_seconds if max_seconds is not None else config.time_budget_s)
    Lease(dest, config.prefix + LEASE_NAME, run_id, fan.run_hours * 3600).acquire(heartbeat=False)
    report = BackupReport(run_id, source.describe(), f"{dest.describe()} prefix {config.prefix}",
                          utc_iso(dt.datetime.now(dt.UTC)))
    plan: dict[str, Any] = {"run_id": run_id, "source": report.source, "destination": report.destination,
                            "started": report.started, "order": source.listing_order,
                            "stop_reason": None, "objects": 0, "bytes": 0}
    try:
        plan["incomplete_uploads_aborted"] = dest.cleanup(config.prefix)
        segments = _Segments(dest, config, plan["order"], source.sort_key)
        shards = 0
        with ThreadPoolExecutor(8, "backup-enqueue") as senders:
            sent = []
            try:
                for key_range, count, size in cut(source, config, fan, deadline):
                    task = ShardTask(run_id, shards, key_range, count, size, segments.covering(key_range))
                    body = task.to_message()
                    if len(body.encode()) > MAX_MESSAGE:  # index hints are optional: HEADs instead
                        body = ShardTask(run_id, shards, key_range, count, size).to_message()
                    sent.append(senders.submit(queue.send_message, body))
                    shards, plan["objects"], plan["bytes"] = shards + 1, plan["objects"] + count, plan["bytes"] + size
            except TimeoutError:
                plan["stop_reason"] = (f"planning reached its time budget after {plan['objects']} objects in "
                                       f"{shards} shards; the next run plans from the start again")
            for future in sent:
                future.result()  # a failed send fails the plan before plan.json exists
        plan["shards"] = shards
        plan["planned_s"] = round(time.monotonic() - started, 3)
        put_json(dest, RunPaths(config.prefix, run_id).plan, plan, create=True)
    except BaseException:
        Lease(dest, config.prefix + LEASE_NAME, run_id, 1).end_if_mine()  # nothing was enqueued for good
        raise
    log.info("backup %s planned: %d shards, %d objects, %.1f MiB in %.1f s", run_id, shards, plan["objects"],
             plan["bytes"] / MIB, plan["planned_s"])
    finish_if_complete(dest, config.prefix, run_id)  # shards that finished before the plan was written
    return plan


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
