"""Plan a fan-out run in steps: each step cuts shards until its deadline, then hands over on the queue.

Listing a container of 100 M blobs takes hours, longer than any one invocation may run, so
planning continues in plan step messages on the shard queue (`{"v": 1, "kind": "plan", "run",
"next", "objects", "bytes", "step"}`), run by the same queue-triggered function as the shards
(`next` 0: the first step's safety message, fanout.py, for a first step that was killed). The
cut is durable: before shard n's message is sent, its task is created (`If-None-Match: *`) at
`runs/<run>/tasks/<n>.json`, and a step starts after the end of task n-1's range. Each task
records the step that cut it (`"step"`: that step's first n). A step run twice (killed and
redelivered, or delivered twice) re-sends the tasks its own step cut (shards are idempotent)
and cuts on from the last one, so the cut never changes under shards already queued; at a
task a later step cut it stops quietly (that step's own message carries on), and when
another host creates task n first, it stops and leaves the plan to it. A re-send that
reaches the deadline hands over like a cut, the next message carrying on for the same step.
The step that reaches the end of the listing (the last, open-ended range) writes `plan.json`
from the run header `runs/<run>/planning.json` the first step wrote.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crosscloud.backup.config import MIB, BackupConfig
from crosscloud.backup.range import KeyRange
from crosscloud.backup.runstate import SEGMENTS, RunPaths, exists, finish_if_complete, get_json, put_json
from crosscloud.backup.shards import ShardTask
from crosscloud.backup.walk import prefetch
from crosscloud.stores.base import ObjectStore

if TYPE_CHECKING:
    from crosscloud.backup.fanout import FanoutConfig

log = logging.getLogger("crosscloud.backup")
MAX_MESSAGE = 48 * 1024  # the queue takes 64 KiB per message; base64 (the host's default) adds a third
PAGE_SIZE = 5000  # keys per listing page: the most Azure returns
STEP_SECONDS: float | None = None  # a step's budget; None: BACKUP_TIME_BUDGET_SECONDS (tests: 0, a page a step)
SAFETY_MARGIN_S = 300.0  # after the first step's budget, its safety message shows (a killed step's finish)
MAX_VISIBILITY_S = 7 * 24 * 3600 - 3600  # the queue's 7 days, under the default 7-day time-to-live


class _CutDeadline(Exception):
    """The step's own deadline: hand over. Private, so that a real timeout (a socket's
    `TimeoutError`) fails the step, which the host retries, never hands over for ever."""


def step_seconds(config: BackupConfig) -> float:
    return STEP_SECONDS if STEP_SECONDS is not None else config.time_budget_s


def safety_delay(budget: float) -> int:
    """How long the first step's safety message stays invisible: the step's budget and a
    margin, below the queue's limit (7 days, and under the message's time-to-live)."""
    return min(int(budget + SAFETY_MARGIN_S) + 1, MAX_VISIBILITY_S)


@dataclass(frozen=True)
class PlanStep:
    """A plan step message: cut the run's shards from number `next` on (totals so far), as
    step `step` (the first n of the step whose tasks it re-sends; itself when None)."""

    run_id: str
    next: int
    objects: int = 0
    bytes: int = 0
    step: int | None = None

    @property
    def mark(self) -> int:
        """The step its tasks are recorded as cut by."""
        return self.next if self.step is None else self.step

    def to_message(self) -> str:
        return json.dumps({"v": 1, "kind": "plan", "run": self.run_id, "next": self.next, "objects": self.objects,
                           "bytes": self.bytes, "step": self.mark}, ensure_ascii=False)

    @classmethod
    def from_message(cls, body: bytes | str) -> PlanStep:
        try:
            data = json.loads(body)
            if data.get("v") != 1 or data.get("kind") != "plan":
                raise ValueError("not a version 1 plan step message")
            numbers = (data["next"], data["objects"], data["bytes"], data.get("step", data["next"]))
            if not isinstance(data["run"], str) or not all(type(x) is int and x >= 0 for x in numbers) \
                    or numbers[3] > data["next"]:
                raise ValueError("run is a string; next, objects, bytes and step (<= next) whole numbers")
            return cls(data["run"], *numbers[:3], None if numbers[3] == data["next"] else numbers[3])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed backup plan step message: {exc}") from None


def is_plan_step(body: bytes | str) -> bool:
    """Whether a queue message is a plan step (else it is read as a shard message)."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("kind") == "plan"


class Segments:
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


def cut(source: ObjectStore, config: BackupConfig, fan: FanoutConfig, deadline: float,
        start_after: str | None = None, page_size: int | None = None) -> Iterator[tuple[KeyRange, int, int]]:
    """The source's key ranges after `start_after`, in listing order: (range, objects, bytes).

    The range that reaches the end of the listing is open-ended (new keys land in it); a full
    range is held back until a later key shows it is not the last. At `deadline` (checked
    after each page but the last, once there is a range to yield) it yields what it has and
    raises `_CutDeadline`, so a step always cuts at least one range.
    """
    start, count, size, last = start_after, 0, 0, start_after
    full: tuple[KeyRange, int, int] | None = None
    yielded = False
    pages = source.list_pages(config.source_prefix, page_size=page_size or PAGE_SIZE, start_after=start_after)
    with prefetch(pages) as listing:  # the next page is on its way while this one's tasks are written
        for page in listing:
            for info in page.items:
                if full is not None:
                    yield full
                    full, yielded = None, True
                count, size, last = count + 1, size + info.size, info.key
                if count >= fan.shard_objects or size >= fan.shard_bytes:
                    full = (KeyRange(start, last), count, size)
                    start, count, size = last, 0, 0
            if page.next_token is not None and time.monotonic() > deadline and (yielded or full or count):
                if full is not None:
                    yield full
                if count:
                    yield KeyRange(start, last), count, size
                raise _CutDeadline(last)
    if full is not None:
        yield KeyRange(full[0].start_after, None), full[1], full[2]
    else:
        yield KeyRange(start, None), count, size


class Step:
    """One planning step of a run: re-send the tasks that exist from `step.next`, cut on until
    the deadline or the end of the listing, then hand over or write the plan."""

    def __init__(self, source: ObjectStore, dest: ObjectStore, queue: Any, config: BackupConfig,
                 fan: FanoutConfig, header: dict[str, Any], step: PlanStep):
        self.source, self.dest, self.queue, self.config, self.fan = source, dest, queue, config, fan
        self.header, self.step, self.paths = header, step, RunPaths(config.prefix, step.run_id)
        self.next, self.objects, self.bytes, self.mark = step.next, step.objects, step.bytes, step.mark
        self.queued: list[tuple[ShardTask, Future[Any]]] = []  # sent (or being sent) by this step
        self.writer = uuid.uuid4().hex  # tells our own task writes from another host's
        self._checked = 0  # sends before this one are known to have succeeded
        self.resending = False  # stopped at the deadline while re-sending this step's tasks

    def so_far(self, status: str) -> dict[str, Any]:
        return {**self.header, "status": status, "stop_reason": None, "objects": self.objects,
                "bytes": self.bytes, "shards": self.next}

    def run(self, deadline: float) -> dict[str, Any] | None:
        """The plan (`planning: continues` if a later step goes on); None if another host owns it."""
        start: str | None = None
        if self.next:
            before = self._task(self.next - 1)
            if before is None:
                raise RuntimeError(f"backup {self.step.run_id}: task {self.next - 1} is missing; cannot plan on")
            start = before[0].key_range.end
        with ThreadPoolExecutor(8, "backup-enqueue") as senders:
            done, owned, later = self.next > 0 and start is None, True, False
            try:
                resent = 0
                while not done and (existing := self._task(self.next)) is not None:
                    if existing[2] != self.mark:  # cut by a later step: its own message carries on
                        later = True
                        break
                    if resent and time.monotonic() > deadline:
                        self.resending = True  # the next message re-sends the rest, as this step
                        raise _CutDeadline(self.next)
                    self._send(senders, *existing[:2])  # a step run again: the cut stays as it was
                    start, done, resent = existing[0].key_range.end, existing[0].key_range.end is None, resent + 1
                if not done and not later:
                    done, owned = self._cut(senders, deadline, start)
            except _CutDeadline:
                pass
            self._wait()
        if later:
            log.info("backup %s: shard %d was cut by a later plan step; this step stops", self.step.run_id, self.next)
            return None
        if not owned:
            log.warning("backup %s: another host is cutting shard %d; this step stops", self.step.run_id, self.next)
            return None
        if done:
            return self._planned()
        return self._hand_over()

    def _cut(self, senders: ThreadPoolExecutor, deadline: float, start: str | None) -> tuple[bool, bool]:
        segments = Segments(self.dest, self.config, self.header["order"], self.source.sort_key)
        with contextlib.closing(cut(self.source, self.config, self.fan, deadline, start)) as ranges:
            return self._cut_ranges(senders, ranges, segments)

    def _cut_ranges(self, senders: ThreadPoolExecutor, ranges: Iterator[tuple[KeyRange, int, int]],
                    segments: Segments) -> tuple[bool, bool]:
        """Write each range's task (create-only), then send it: (listing done, step still ours)."""
        for key_range, count, size in ranges:
            n = self.next
            task = ShardTask(self.step.run_id, n, key_range, count, size, segments.covering(key_range))
            body = task.to_message()
            if len(body.encode()) > MAX_MESSAGE:  # index hints are optional: HEADs instead
                task = ShardTask(self.step.run_id, n, key_range, count, size)
                body = task.to_message()
            record = {"writer": self.writer, "step": self.mark, "body": body}
            if not put_json(self.dest, self.paths.task(n), record, create=True):
                theirs = get_json(self.dest, self.paths.task(n)) or {}
                if theirs.get("writer") != self.writer:  # not our own write, retried
                    return False, False
            self._send(senders, task, body)
            if key_range.end is None:
                return True, True
        return True, True

    def _task(self, n: int) -> tuple[ShardTask, str, int] | None:
        """Task n, its message and the step that cut it (a task written before steps were
        recorded counts as this step's)."""
        data = get_json(self.dest, self.paths.task(n))
        return None if data is None else (ShardTask.from_message(data["body"]), data["body"],
                                          data.get("step", self.mark))

    def _send(self, senders: ThreadPoolExecutor, task: ShardTask, body: str) -> None:
        """Send one shard's message (its task is written); a failed send stops the cut at once."""
        self.queued.append((task, senders.submit(self.queue.send_message, body)))
        self.next, self.objects, self.bytes = task.n + 1, self.objects + task.objects, self.bytes + task.bytes
        while self._checked < len(self.queued) and (self.queued[self._checked][1].done()
                                                    or len(self.queued) - self._checked > 64):
            self.queued[self._checked][1].result()  # raises a failed send
            self._checked += 1

    def _wait(self) -> None:
        for _, sent in self.queued:
            sent.result()

    def _planned(self) -> dict[str, Any]:
        plan = self.so_far("planned")
        plan["planned_s"] = round(time.time() - _epoch(plan["started"]), 3)
        written = put_json(self.dest, self.paths.plan, plan, create=True)  # else a duplicate step wrote it
        if written:
            log.info("backup %s planned: %d shards, %d objects, %.1f MiB in %.1f s", plan["run_id"], plan["shards"],
                     plan["objects"], plan["bytes"] / MIB, plan["planned_s"])
        finish_if_complete(self.dest, self.config.prefix, self.step.run_id)  # shards that finished first
        return plan if written else get_json(self.dest, self.paths.plan) or plan

    def _hand_over(self) -> dict[str, Any]:
        if exists(self.dest, self.paths.plan):  # recorded failed meanwhile (a poisoned duplicate step)
            return get_json(self.dest, self.paths.plan) or self.so_far("failed")
        self.queue.send_message(PlanStep(self.step.run_id, self.next, self.objects, self.bytes,
                                         self.mark if self.resending else None).to_message())
        log.info("backup %s: %d shard(s) cut so far (%d objects); planning continues on the queue",
                 self.step.run_id, self.next, self.objects)
        return {**self.so_far("planning"), "planning": "continues"}


def _epoch(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
