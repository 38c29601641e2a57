"""Fan-out backup (`BACKUP_FANOUT=queue`): plan a run into shards, one queue message each.

The first planning step (the timer, `POST /api/backup`, the CLI) takes the run lease (held,
without a heartbeat, until the run's last shard ends it, or `BACKUP_FANOUT_RUN_HOURS`),
aborts incomplete uploads a killed run left and writes the run header; then it lists the
source and cuts it into key ranges of at most `BACKUP_SHARD_OBJECTS` objects and
`BACKUP_SHARD_MB` MiB, sending one message per shard to the Storage queue
`BACKUP_QUEUE_NAME` (identity-based connection `CROSSCLOUD_QUEUE__queueServiceUri`). A step
that reaches its budget hands the rest to a plan step message on the same queue, run by the
queue-triggered function (planning.py), until the listing ends. Queue-triggered functions
copy the shards (shards.py); the plan (runstate.py) is written last, so a run completes only
once both the plan and every shard's result exist, whichever comes last. If planning fails
after the lease was taken (the first step at once, a later step once its message is
poisoned, or when another run took the lease over), the plan is written all the same, marked
`failed` with the error's name, before the lease ends: every shard it queued then stops
without copying and reports `cancelled`, a shard already copying reports as usual, and the
last report completes the run as failed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import time
import uuid
from collections.abc import Callable
from concurrent.futures import wait
from dataclasses import dataclass
from typing import Any

from crosscloud.backup import planning
from crosscloud.backup.config import MIB, BackupConfig
from crosscloud.backup.lease import LEASE_NAME, Lease
from crosscloud.backup.report import utc_iso
from crosscloud.backup.runstate import RunPaths, exists, finish_if_complete, get_json, put_json
from crosscloud.backup.shards import ShardTask, cancel
from crosscloud.errors import CrossCloudError, SettingError
from crosscloud.settings import Settings
from crosscloud.stores.base import ObjectStore

log = logging.getLogger("crosscloud.backup")
QUEUE_NAME = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")


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


class PlanFailed(CrossCloudError):
    """Planning failed; the run is recorded as failed, so the shards it queued stop at once."""

    code = "backup_plan_failed"


def plan_run(source: ObjectStore, dest: ObjectStore, queue: Any, config: BackupConfig, fan: FanoutConfig, *,
             max_seconds: float | None = None, run_id: str | None = None) -> dict[str, Any]:
    """Plan one fan-out run: its first planning step, inline, within `max_seconds` (default: the
    step budget). Returns the plan, or the plan so far with `planning: continues` when a plan
    step message carries on. Raises `LeaseHeld` if a run (fan-out or not) holds the lease,
    `PlanFailed` if this step failed after the lease.

    Once the run header is written, a safety plan step (`next` 0) goes to the queue, invisible
    until well after this step's budget: should this process be killed mid-step, that message
    carries the plan on (re-sending this step's tasks, then cutting on), so the run still
    reports; a step that ends normally deletes it."""
    run_id = run_id or f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    budget = max_seconds if max_seconds is not None else planning.step_seconds(config)
    deadline = time.monotonic() + budget
    Lease(dest, config.prefix + LEASE_NAME, run_id, fan.run_hours * 3600).acquire(heartbeat=False)
    header: dict[str, Any] = {"run_id": run_id, "source": source.describe(),
                              "destination": f"{dest.describe()} prefix {config.prefix}",
                              "started": utc_iso(dt.datetime.now(dt.UTC)), "order": source.listing_order,
                              "incomplete_uploads_aborted": 0}
    step = planning.Step(source, dest, queue, config, fan, header, planning.PlanStep(run_id, 0))
    try:
        header["incomplete_uploads_aborted"] = dest.cleanup(config.prefix)
        put_json(dest, RunPaths(config.prefix, run_id).planning, header, create=True)
        safety = queue.send_message(planning.PlanStep(run_id, 0).to_message(),
                                    visibility_timeout=planning.safety_delay(budget))
        plan = step.run(deadline)
    except BaseException as exc:
        wait([sent for _, sent in step.queued])
        unsent = [task for task, sent in step.queued if sent.cancelled() or sent.exception() is not None]
        why = f"{type(exc).__name__}: {exc.message}" if isinstance(exc, CrossCloudError) else type(exc).__name__
        plan = {**step.so_far("failed"), "error": type(exc).__name__, "shards": len(step.queued),
                "stop_reason": f"failed while planning, after {len(step.queued) - len(unsent)} shard(s) were "
                               f"queued ({why}); they stop without copying"}
        recorded = _record_failure(dest, config, plan, unsent, nothing_queued=len(unsent) == len(step.queued))
        if not isinstance(exc, Exception):
            raise  # interrupted (Ctrl-C, the host stopping): recorded, then as it was
        if not recorded:  # the plan was written after all (only its answer was lost): the run goes on
            finish_if_complete(dest, config.prefix, run_id)
            return get_json(dest, RunPaths(config.prefix, run_id).plan)
        raise PlanFailed(f"backup {run_id} {plan['stop_reason']}; the run's report follows once they have: "
                         f".crosscloud/runs/{run_id}/report.json under the backup prefix",
                         status=exc.status if isinstance(exc, CrossCloudError) else 500) from exc
    _withdraw(queue, safety, run_id)
    return plan or {**step.so_far("planning"), "planning": "continues"}


def _withdraw(queue: Any, safety: Any, run_id: str) -> None:
    """Delete the first step's safety message once the step has ended normally. Should the
    delete fail, the message runs later all the same and changes nothing: it sees the plan,
    or re-sends the first step's own tasks and stops at the next step's (planning.py)."""
    try:
        queue.delete_message(safety)
    except Exception as exc:  # noqa: BLE001 - any failure is harmless, as above
        log.warning("backup %s: could not delete the first step's safety message (%s); it will find the "
                    "plan cut and stop", run_id, type(exc).__name__)


def continue_run(source: ObjectStore, dest: ObjectStore, queue: Any, config: BackupConfig, fan: FanoutConfig,
                 step: planning.PlanStep) -> dict[str, Any] | None:
    """Run a plan step message (queue-triggered): the plan, or None if there was nothing to do.
    A failure raises, so the host retries the step; `fail_step` records a poisoned one."""
    paths = RunPaths(config.prefix, step.run_id)
    written = get_json(dest, paths.plan)
    if written is not None:  # a step delivered again after the plan was written (or recorded failed)
        finish_if_complete(dest, config.prefix, step.run_id)
        return None
    header = get_json(dest, paths.planning)
    if not isinstance(header, dict):
        raise CrossCloudError(f"backup {step.run_id}: its run header is missing; cannot plan on",
                              code="backup_plan_failed")
    lease = get_json(dest, config.prefix + LEASE_NAME)
    holder = lease.get("run_id") if isinstance(lease, dict) else None
    if holder != step.run_id:  # the run outlived BACKUP_FANOUT_RUN_HOURS and another run took over
        taken = f"run {holder} took its lease over" if holder else "its lease is gone"
        fail_step(dest, config, step, "LeaseLost", f"{taken} (the run outlived BACKUP_FANOUT_RUN_HOURS)")
        return None
    deadline = time.monotonic() + planning.step_seconds(config)
    return planning.Step(source, dest, queue, config, fan, header, step).run(deadline)


def fail_step(dest: ObjectStore, config: BackupConfig, step: planning.PlanStep, error: str, why: str) -> bool:
    """Record the run failed from a plan step (poisoned, or its lease lost). The step's own tasks
    may never have been sent: each is reported `cancelled` unless it has reported."""
    paths = RunPaths(config.prefix, step.run_id)
    header = get_json(dest, paths.planning)
    if not isinstance(header, dict):
        log.error("backup %s: a failed plan step of a run without a header; nothing to record", step.run_id)
        return False
    last = get_json(dest, paths.planning_error)
    if isinstance(last, dict) and last.get("reason"):
        why += f"; last attempt: {last['reason']}"
    tasks: list[ShardTask] = []
    while isinstance(data := get_json(dest, paths.task(step.next + len(tasks))), dict):
        try:
            tasks.append(ShardTask.from_message(data.get("body", "")))
        except ValueError:
            break  # unreadable: its message (the same body) cannot run a shard either
    shards = step.next + len(tasks)
    plan = {**header, "status": "failed", "error": error, "stop_reason": f"failed while planning, after {shards} "
            f"shard(s) were cut ({why}); they stop without copying", "shards": shards,
            "objects": step.objects + sum(t.objects for t in tasks), "bytes": step.bytes + sum(t.bytes for t in tasks)}
    return _record_failure(dest, config, plan, tasks, nothing_queued=False)


def note_step_error(dest: ObjectStore, config: BackupConfig, step: planning.PlanStep, exc: Exception,
                    attempt: int) -> None:
    """Keep why a plan step's attempt failed, so a poisoned step's report says more than 'failed'."""
    why = exc.message if isinstance(exc, CrossCloudError) else f"unexpected {type(exc).__name__}"
    try:
        put_json(dest, RunPaths(config.prefix, step.run_id).planning_error, {"attempt": attempt, "reason": why})
    except CrossCloudError:
        log.warning("backup %s: could not record why a plan step failed", step.run_id)


def _record_failure(dest: ObjectStore, config: BackupConfig, plan: dict[str, Any], unsent: list[ShardTask],
                    nothing_queued: bool) -> bool:
    """Record the run as failed (`plan`: status `failed`, the error's name) while it still
    holds the lease, so every shard it queued stops without copying and reports `cancelled`
    (`unsent`: those whose message may not have gone out, cancelled here unless a host has
    taken the shard's lease: that one is copying, or will read the failed plan, and reports);
    the last report completes the run (runstate.py) and ends the lease. False if the plan had
    been written after all."""
    paths = RunPaths(config.prefix, plan["run_id"])
    log.error("backup %s %s", plan["run_id"], plan["stop_reason"])
    try:
        if not put_json(dest, paths.plan, plan, create=True):
            written = get_json(dest, paths.plan)
            if isinstance(written, dict) and written.get("status") != "failed":
                log.warning("backup %s: its plan was written after all; the run goes on", plan["run_id"])
                return False
        for task in unsent:  # perhaps queued all the same: such a message finds its result and stops
            if not exists(dest, paths.lease(task.n)):  # a shard a host has taken reports as usual
                cancel(dest, config, task, "its message may not have been queued", finish=False)
        finish_if_complete(dest, config.prefix, plan["run_id"])  # no shard queued: the run ends here
    except CrossCloudError as also:
        log.error("backup %s: could not record the failed plan (%s); the shards it queued copy their ranges "
                  "and its lease expires on its own (BACKUP_FANOUT_RUN_HOURS)", plan["run_id"], also.message)
        if nothing_queued:  # no shard can be left running
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
        if progress is not None:  # while planning continues, the total is the shards cut so far
            done = sum(1 for page in dest.list_pages(paths.shards) for i in page.items if i.key.endswith(".json"))
            written = get_json(dest, paths.plan) if plan.get("planning") == "continues" else None
            progress(done, (written or plan)["shards"])
        time.sleep(1.0)


def _configured(settings: Settings) -> tuple[ObjectStore, ObjectStore, Any, BackupConfig, FanoutConfig]:
    from crosscloud.backup.shards import configured
    from crosscloud.stores import factory

    _, dest, config = configured(settings)
    fan = FanoutConfig.from_settings(settings)
    source = factory.azure_store(settings, bulk=True)  # listing only, but one long pass: the bulk budget
    return source, dest, factory.shard_queue(settings, fan.queue_name), config, fan


def plan_configured(settings: Settings | None = None, *, max_seconds: float | None = None) -> dict[str, Any]:
    """Plan a fan-out run of the configured backup (timer, `POST /api/backup`, the CLI)."""
    return plan_run(*_configured(settings or Settings()), max_seconds=max_seconds)


def continue_configured(step: planning.PlanStep, settings: Settings | None = None) -> dict[str, Any] | None:
    """Run a plan step message of the configured backup (the queue-triggered function)."""
    return continue_run(*_configured(settings or Settings()), step)
