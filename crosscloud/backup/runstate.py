"""A fan-out run's state in the destination's reserved area, and the run's one report.

Layout under `<prefix>.crosscloud/` (every object written by exactly one writer, or created
with `If-None-Match: *` so that exactly one of several writers wins):

    runs/<run>/planning.json        the run header (source, destination, start, order), by the
                                    first planning step, for the step that writes the plan
    runs/<run>/tasks/<n>.json       shard n's message, created before it is sent (planning.py)
    runs/<run>/planning.error       why a plan step's last attempt failed (for the poison report)
    runs/<run>/plan.json            the plan: shard count, totals, status `planned` or `failed`
                                    (created by the planning step that reaches the end of the
                                    listing, last; see fanout.py)
    runs/<run>/shards/<n>.json      shard n's result (created once: a redelivery finds it)
    runs/<run>/shards/<n>.lease     shard n's lease (lease.py): one host works a shard at once
    runs/<run>/shards/<n>.error     why shard n's last attempt failed (for the poison report)
    runs/<run>/index/<n>.jsonl.gz   shard n's index segment (index.py format, its range only)
    runs/<run>/report.json          the run's report (created by whichever shard sees it complete)
    index/segments.json             the last finished run's segments: the next plan hands each
                                    shard the segments that cover its range

The run is complete when plan.json exists and every shard has a result; whoever sees that
first (a shard, the poison handler, or the planner itself) aborts incomplete uploads under
the prefix (no shard of the run is still writing), then creates report.json; the winner logs
the one `crosscloud.backup.report` line, publishes the index segments and ends the run lease.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from crosscloud.backup.config import RESERVED
from crosscloud.backup.index import SEGMENTS_NAME
from crosscloud.backup.lease import LEASE_NAME, Lease
from crosscloud.backup.report import MAX_LISTED_FAILURES, BackupReport, Failure, utc_iso
from crosscloud.backup.run import REPORT_LOGGER
from crosscloud.errors import NotFound, PreconditionFailed
from crosscloud.stores.base import ObjectStore, PutOptions

log = logging.getLogger("crosscloud.backup")
SEGMENTS = SEGMENTS_NAME
MIB = 1024 * 1024


class RunPaths:
    def __init__(self, prefix: str, run_id: str):
        self.root = f"{prefix}{RESERVED}runs/{run_id}/"

    @property
    def plan(self) -> str:
        return self.root + "plan.json"

    @property
    def planning(self) -> str:
        return self.root + "planning.json"

    @property
    def planning_error(self) -> str:
        return self.root + "planning.error"

    @property
    def report(self) -> str:
        return self.root + "report.json"

    @property
    def shards(self) -> str:
        return self.root + "shards/"

    def result(self, n: int) -> str:
        return f"{self.shards}{n:06d}.json"

    def lease(self, n: int) -> str:
        return f"{self.shards}{n:06d}.lease"

    def error(self, n: int) -> str:
        return f"{self.shards}{n:06d}.error"

    def task(self, n: int) -> str:
        return f"{self.root}tasks/{n:06d}.json"

    def segment(self, n: int) -> str:
        return f"{self.root}index/{n:06d}.jsonl.gz"


def put_json(store: ObjectStore, key: str, data: Any, *, create: bool = False) -> bool:
    """Write JSON; with `create`, only if absent: False when another writer got there first."""
    body = json.dumps(data, ensure_ascii=False).encode()
    try:
        store.put(key, io.BytesIO(body), len(body),
                  PutOptions(content_type="application/json", if_none_match=create))
    except PreconditionFailed:
        if not create:
            raise
        return False
    return True


def get_json(store: ObjectStore, key: str) -> Any | None:
    """The JSON object at `key`, or None if there is none."""
    try:
        with store.open(key) as reader:
            return json.loads(b"".join(reader.iter_chunks()))
    except NotFound:
        return None


def exists(store: ObjectStore, key: str) -> bool:
    try:
        store.stat(key)
    except NotFound:
        return False
    return True


def result_keys(store: ObjectStore, paths: RunPaths) -> Iterator[str]:
    for page in store.list_pages(paths.shards):
        yield from (info.key for info in page.items if info.key.endswith(".json"))


def _number(key: str, paths: RunPaths) -> int:
    """The shard number of a result key; a result numbered past the plan's shards (one cut
    after a failed plan was counted, cancelled late) never stands in for a missing one."""
    try:
        return int(key[len(paths.shards):-len(".json")])
    except ValueError:
        return sys.maxsize  # no shard's result


def combine(plan: dict[str, Any], results: list[dict[str, Any]]) -> BackupReport:
    """The run's report from its shards' results, in the shape of a single run's report."""
    report = BackupReport(run_id=plan["run_id"], source=plan["source"], destination=plan["destination"],
                          started=plan["started"], incomplete_uploads_aborted=plan.get("incomplete_uploads_aborted", 0))
    reasons: list[str] = [plan["stop_reason"]] if plan.get("stop_reason") else []
    for result in sorted(results, key=lambda r: r["n"]):
        shard = result.get("report")
        if result.get("status") == "cancelled":  # its run failed while planning (the plan's stop_reason)
            report.pending += result.get("objects", 0)
            report.pending_bytes += result.get("bytes", 0)
            continue
        if result.get("status") != "done" or shard is None:
            report.failed_count += 1
            report.pending += result.get("objects", 0)
            report.pending_bytes += result.get("bytes", 0)
            what = f"shard {result['n']} (keys after {result['range']['start_after']!r} through " \
                   f"{result['range']['end']!r})"
            report.failed.append(Failure(what, result.get("reason", "failed")))
            reasons.append(f"{what} failed: {result.get('reason', 'failed')}")
            continue
        for name in ("copied", "skipped", "skipped_newer", "failed_count", "pending", "pending_bytes",
                     "bytes_copied"):
            setattr(report, name, getattr(report, name) + shard.get(name, 0))
        report.failed += [Failure(f["key"], f["reason"]) for f in shard.get("failed", [])]
        if shard.get("stop_reason"):
            reasons.append(f"shard {result['n']}: {shard['stop_reason']}")
    report.failed = report.failed[:MAX_LISTED_FAILURES]
    if reasons:
        report.stop_reason = reasons[0] + (f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else "")
    now = dt.datetime.now(dt.UTC)
    report.finished = utc_iso(now)
    started = dt.datetime.fromisoformat(plan["started"].replace("Z", "+00:00"))
    report.duration_s = round((now - started).total_seconds(), 3)
    report.throughput_mib_s = round(report.bytes_copied / MIB / report.duration_s, 2) if report.duration_s else 0.0
    report.complete = report.stop_reason is None and report.pending == 0 and report.failed_count == 0
    return report


def finish_if_complete(dest: ObjectStore, prefix: str, run_id: str) -> BackupReport | None:
    """If every shard of the run has reported, write the run's report; returns it if this
    caller's report was the one written (exactly one caller's is), else None."""
    paths = RunPaths(prefix, run_id)
    plan = get_json(dest, paths.plan)
    if plan is None:
        return None  # still planning: the planner checks again once it has written the plan
    keys = [key for key in result_keys(dest, paths) if _number(key, paths) < plan["shards"]]
    if len(keys) < plan["shards"] or exists(dest, paths.report):
        return None
    with ThreadPoolExecutor(8, "backup-results") as pool:
        results = [r for r in pool.map(lambda key: get_json(dest, key), keys) if r is not None]
    # Every shard has reported: no upload of this run is live. Unless a later run took the
    # lease over meanwhile (this one outlived BACKUP_FANOUT_RUN_HOURS): its uploads are.
    lease = get_json(dest, prefix + LEASE_NAME)
    aborted = dest.cleanup(prefix) if not isinstance(lease, dict) or lease.get("run_id") == run_id else 0
    report = combine(plan, results)
    report.incomplete_uploads_aborted += aborted
    if not put_json(dest, paths.report, report.as_json(), create=True):
        return None  # another shard finished at the same moment and wrote it
    line = json.dumps({"event": "backup_report", **report.as_json()}, ensure_ascii=False)
    logging.getLogger(REPORT_LOGGER).log(logging.INFO if report.ok else logging.WARNING, "%s", line)
    if plan.get("status") != "failed":  # a failed plan's shards cover part of the source: the last index stays
        segments = [{"key": r["index"], **r["range"]} for r in sorted(results, key=lambda r: r["n"])
                    if r.get("index")]
        put_json(dest, prefix + SEGMENTS, {"run_id": run_id, "order": plan["order"], "segments": segments})
    Lease(dest, prefix + LEASE_NAME, run_id, 1).end_if_mine()
    return report
