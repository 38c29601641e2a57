"""The backup triggers: the nightly timer, `POST /api/backup` (admin key), and the fan-out queue.

With BACKUP_FANOUT=queue the timer and `POST /api/backup` only plan the run (202 with the
plan, or the plan so far with `planning: continues`); `backup_shard` runs each message of the
queue BACKUP_QUEUE_NAME: a shard (copied) or a plan step (planning goes on where the last
step stopped). `backup_shard_poison` records a shard or plan step whose message the host
moved to `<queue>-poison` after maxDequeueCount failed attempts, so the run's report names
it (a poisoned plan step fails the run; docs/backup.md).

The schedule is the app setting BACKUP_SCHEDULE (NCRONTAB, UTC), resolved by the host from
`%BACKUP_SCHEDULE%`; nothing here reads it, so a missing value never breaks indexing (the
host reports that one function as in error). `use_monitor` lets the host catch up a run
missed while the app was down, which arrives with `past_due` set.

HTTP status of `POST /api/backup`: 200 when the run completed with no failed object; 207
(the report says what failed or is pending) when it finished partially; 409 when another
run holds the lease; the usual error envelope when it could not start (in fan-out mode,
`backup_plan_failed` when planning failed after the lease: the run is recorded as failed).
An HTTP-triggered run starts nothing after 190 s and cuts copies in flight at 210 s (the
front end drops requests at 230 s); the next run carries on where it stopped.
"""

from __future__ import annotations

import logging

import azure.functions as func

from blueprints.http import handle_errors, json_response, query_flag
from crosscloud import backup
from crosscloud.backup import fanout, planning, shards
from crosscloud.backup.lease import LeaseHeld

bp = func.Blueprint()
log = logging.getLogger("crosscloud.backup")


@bp.function_name("backup_timer")
@bp.timer_trigger(arg_name="timer", schedule="%BACKUP_SCHEDULE%", run_on_startup=False, use_monitor=True)
def backup_timer(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.warning("backup timer is past due (a scheduled run was missed); running now")
    try:
        if fanout.enabled():
            fanout.plan_configured()
            return
        report = backup.run_configured()
    except LeaseHeld as exc:
        log.warning("backup skipped: %s", exc.message)
        return
    if report.failed_count:
        # Fail the invocation so monitoring alerts; the report line above has the details.
        raise RuntimeError(f"backup {report.run_id} finished with {report.failed_count} failed object(s)")


@bp.function_name("backup_now")
@bp.route(route="backup", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
@handle_errors
def backup_now(req: func.HttpRequest) -> func.HttpResponse:
    dry_run = query_flag(req, "dry_run")
    if fanout.enabled() and not dry_run:  # plans only (202); the shards run on the queue
        return json_response(fanout.plan_configured(max_seconds=backup.HTTP_TIME_BUDGET_S), status=202)
    report = backup.run_configured(dry_run=dry_run, max_seconds=backup.HTTP_TIME_BUDGET_S)
    return json_response(report.as_json(), status=200 if report.ok else 207)


@bp.function_name("backup_shard")
@bp.queue_trigger(arg_name="msg", queue_name="%BACKUP_QUEUE_NAME%", connection="CROSSCLOUD_QUEUE")
def backup_shard(msg: func.QueueMessage) -> None:
    body = msg.get_body()
    attempt = getattr(msg, "dequeue_count", None) or 1
    if planning.is_plan_step(body):  # planning goes on where the last step stopped
        step = planning.PlanStep.from_message(body)  # malformed: fails, ends in the poison queue
        try:
            fanout.continue_configured(step)
        except Exception as exc:  # the host retries the step; the poison report says why it failed
            _, dest, config = shards.configured()
            fanout.note_step_error(dest, config, step, exc, attempt)
            raise
        return
    task = shards.ShardTask.from_message(body)  # malformed: fails, ends in the poison queue
    source, dest, config = shards.configured()
    try:
        shards.run_shard(source, dest, config, task, attempt)
    except Exception as exc:  # the host retries the message; the poison report says why it failed
        shards.note_error(dest, config, task, exc, attempt)
        raise


@bp.function_name("backup_shard_poison")
@bp.queue_trigger(arg_name="msg", queue_name="%BACKUP_QUEUE_NAME%-poison", connection="CROSSCLOUD_QUEUE")
def backup_shard_poison(msg: func.QueueMessage) -> None:
    body = msg.get_body()
    why = "its message failed the host's maxDequeueCount attempts and was moved to the poison queue"
    try:
        message = planning.PlanStep.from_message(body) if planning.is_plan_step(body) else \
            shards.ShardTask.from_message(body)
    except ValueError as exc:
        log.error("backup: a message in the poison queue is no shard or plan step message (%s); dropped", exc)
        return
    _, dest, config = shards.configured()
    if isinstance(message, planning.PlanStep):  # planning stopped for good: the run fails, nothing is lost
        fanout.fail_step(dest, config, message, "PlanStepPoisoned", f"a plan step {why}")
        return
    shards.record_failure(dest, config, message, why)
