"""One fan-out shard: a key range copied by the same engine as a whole run (`run.CopyRun`).

A shard message names its run, its number and its key range (in the source's order), and
the previous run's index segments that cover the range. Copying it is idempotent: a result
already written means a redelivered message has nothing to do; a shard lease
(`runs/<run>/shards/<n>.lease`) keeps two hosts off one shard; the result is created with
`If-None-Match: *`. A shard that stops early (time budget, outage, fatal error) raises, so
the host retries the message and the retry starts from what is already copied; after the
host's maxDequeueCount the message lands in the poison queue, whose function records the
shard as failed (`record_failure`). A shard of a run whose planning failed (its plan says
`failed`) copies nothing and reports `cancelled` (`cancel`). Either way the shard reports,
and the last report completes the run (runstate.py).
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from crosscloud.backup import index
from crosscloud.backup.config import BackupConfig
from crosscloud.backup.lease import LeaseHeld
from crosscloud.backup.metadata import backup_metadata
from crosscloud.backup.plan import BackupPlanner
from crosscloud.backup.range import KeyRange
from crosscloud.backup.run import CopyRun
from crosscloud.backup.runstate import RunPaths, exists, finish_if_complete, get_json, put_json
from crosscloud.backup.walk import astral_sensitive, prefetch
from crosscloud.errors import CrossCloudError
from crosscloud.settings import Settings
from crosscloud.stores.base import ObjectStore

log = logging.getLogger("crosscloud.backup")
SHARD_LOGGER = "crosscloud.backup.shard"  # one line per shard; the run's report is the one line that counts


class ShardIncomplete(Exception):
    """The shard stopped before its range was done; raised so the host retries the message."""


@dataclass(frozen=True)
class ShardTask:
    """What one queue message carries (well under the queue's 64 KiB per message)."""

    run_id: str
    n: int
    key_range: KeyRange
    objects: int = 0
    bytes: int = 0
    segments: tuple[tuple[KeyRange, str], ...] = field(default=())

    def to_message(self) -> str:
        return json.dumps({"v": 1, "run": self.run_id, "n": self.n, "range": self.key_range.as_json(),
                           "objects": self.objects, "bytes": self.bytes,
                           "index": [{"key": key, **r.as_json()} for r, key in self.segments]},
                          ensure_ascii=False)

    @classmethod
    def from_message(cls, body: bytes | str) -> ShardTask:
        try:
            data = json.loads(body)
            if data.get("kind", "shard") != "shard":  # a plan step (planning.py) is no shard
                raise ValueError(f"a {data['kind']!r} message, not a shard message")
            if data.get("v") != 1 or not isinstance(data["run"], str) or not isinstance(data["n"], int):
                raise ValueError("not a version 1 shard message")
            segments = tuple((KeyRange.from_json(s), str(s["key"])) for s in data.get("index", []))
            return cls(data["run"], data["n"], KeyRange.from_json(data["range"]), int(data.get("objects", 0)),
                       int(data.get("bytes", 0)), segments)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed backup shard message: {exc}") from None


class RangePlanner(BackupPlanner):
    """The planner over one key range: the destination walked over the range only, the index
    read from the segments that cover it.

    The range is in the source's order; the destination is walked from `start_after` to
    `end` in its own. For keys without characters >= U+E000 the two agree, so the walk sees
    them all; a key with such characters may sort outside the walked range at the
    destination, so when the walk does not show it, a HEAD decides (never a blind copy).
    """

    def __init__(self, source: ObjectStore, dest: ObjectStore, config: BackupConfig, task: ShardTask,
                 index_key: str):
        super().__init__(source, dest, config)
        self.task, self.index_key = task, index_key
        self._dest_order = dest.sort_key

    def destination_entries(self) -> Iterator[tuple[str, tuple[int, str]]]:
        prefix, scope, wanted = self.config.prefix, self.config.source_prefix, self.task.key_range
        start = prefix + wanted.start_after if wanted.start_after is not None else None
        with prefetch(self.dest.list_pages(prefix + scope, start_after=start)) as pages:
            for page in pages:
                for info in page.items:
                    key = info.key[len(prefix):]
                    if not wanted.after_start(key, self._dest_order):
                        continue
                    if not wanted.before_end(key, self._dest_order):
                        return
                    yield key, (info.size, info.etag)

    def index_entries(self) -> Iterator[tuple[str, index.Entry]]:
        """A retry's own segment (an earlier attempt that stopped early wrote it), else the
        previous run's segments covering the range."""
        own = index.read(self.dest, self.index_key, self._order_name)
        first = next(own, None)
        entries = itertools.chain([first], own) if first is not None else itertools.chain.from_iterable(
            index.read(self.dest, key, self._order_name) for _, key in self.task.segments)
        return ((k, e) for k, e in entries if self.task.key_range.contains(k, self._source_order))

    def unsure(self, key: str) -> bool:
        return astral_sensitive(key) and not self.task.key_range.contains(key, self._dest_order)


def shard_backup(source: ObjectStore, dest: ObjectStore, config: BackupConfig, task: ShardTask) -> CopyRun:
    """The backup's run loop over one key range, with the shard's planner, lease and logger."""
    paths = RunPaths(config.prefix, task.run_id)
    planner = RangePlanner(source, dest, config, task, paths.segment(task.n))
    run = CopyRun(source, dest, config, planner, metadata=backup_metadata, lease_key=paths.lease(task.n),
                  destination=f"{dest.describe()} prefix {config.prefix}", run_id=f"{task.run_id}#{task.n}",
                  key_range=task.key_range)
    run.report_logger = SHARD_LOGGER
    return run


def run_shard(source: ObjectStore, dest: ObjectStore, config: BackupConfig, task: ShardTask,
              dequeue_count: int = 1) -> dict[str, Any] | None:
    """Copy one shard unless it has reported already; returns its result (None: nothing to do).

    Raises `ShardIncomplete` (or what the run raised) so the host retries the message.
    """
    paths = RunPaths(config.prefix, task.run_id)
    if exists(dest, paths.result(task.n)):
        log.info("backup shard %s#%d has reported already (redelivered message); nothing to do",
                 task.run_id, task.n)
        finish_if_complete(dest, config.prefix, task.run_id)
        return None
    plan = get_json(dest, paths.plan)
    if isinstance(plan, dict) and plan.get("status") == "failed":
        log.warning("backup shard %s#%d: its run failed while planning; stopping without copying", task.run_id,
                    task.n)
        cancel(dest, config, task, "its run failed while planning")
        return None
    waited_until = time.monotonic() + config.lease_ttl_s + 30
    while True:
        try:
            report = shard_backup(source, dest, config, task).run()
            break
        except LeaseHeld:  # another host works this shard (a duplicate delivery): wait for it
            if time.monotonic() > waited_until:
                raise
            time.sleep(min(2.0, config.lease_ttl_s / 4))
            if exists(dest, paths.result(task.n)):
                return None
    if report.stop_reason or report.pending:
        why = report.stop_reason or f"{report.pending} object(s) pending"
        put_json(dest, paths.error(task.n), {"attempt": dequeue_count, "reason": why})
        raise ShardIncomplete(f"backup shard {task.run_id}#{task.n} stopped early ({why}); the host retries it")
    result = {"n": task.n, "status": "done", "range": task.key_range.as_json(), "objects": task.objects,
              "bytes": task.bytes, "index": paths.segment(task.n), "report": report.as_json()}
    if not put_json(dest, paths.result(task.n), result, create=True):
        return None  # a host presumed dead finished it after all
    finish_if_complete(dest, config.prefix, task.run_id)
    return result


def record_failure(dest: ObjectStore, config: BackupConfig, task: ShardTask, why: str) -> bool:
    """Record the shard as failed for good (poison queue); False if it had reported already."""
    paths = RunPaths(config.prefix, task.run_id)
    last = get_json(dest, paths.error(task.n))
    if isinstance(last, dict) and last.get("reason"):
        why += f"; last attempt: {last['reason']}"
    result = {"n": task.n, "status": "failed", "range": task.key_range.as_json(), "objects": task.objects,
              "bytes": task.bytes, "index": None, "reason": why, "report": None}
    written = put_json(dest, paths.result(task.n), result, create=True)
    finish_if_complete(dest, config.prefix, task.run_id)
    return written


def cancel(dest: ObjectStore, config: BackupConfig, task: ShardTask, why: str, *, finish: bool = True) -> bool:
    """Report the shard `cancelled` without copying (its run failed while planning): its
    objects count as pending. False if it had reported already. `finish=False`: the caller
    cancelling many checks for completion once, after the last."""
    result = {"n": task.n, "status": "cancelled", "range": task.key_range.as_json(), "objects": task.objects,
              "bytes": task.bytes, "index": None, "reason": why, "report": None}
    written = put_json(dest, RunPaths(config.prefix, task.run_id).result(task.n), result, create=True)
    if finish:
        finish_if_complete(dest, config.prefix, task.run_id)
    return written


def note_error(dest: ObjectStore, config: BackupConfig, task: ShardTask, exc: Exception, attempt: int) -> None:
    """Keep why an attempt failed, so a poisoned shard's report says more than 'failed'."""
    why = exc.message if isinstance(exc, CrossCloudError) else \
        str(exc) if isinstance(exc, ShardIncomplete) else f"unexpected {type(exc).__name__}"
    try:
        put_json(dest, RunPaths(config.prefix, task.run_id).error(task.n), {"attempt": attempt, "reason": why})
    except CrossCloudError:
        log.warning("backup shard %s#%d: could not record why it failed", task.run_id, task.n)


def configured(settings: Settings | None = None) -> tuple[ObjectStore, ObjectStore, BackupConfig]:
    from crosscloud.stores import factory  # SDK clients are built on first use, never at import

    settings = settings or Settings()
    config = BackupConfig.from_settings(settings)
    source = factory.azure_store(settings, chunk_size=config.part_size, bulk=True)
    return source, factory.s3_store(settings, backup=True), config
