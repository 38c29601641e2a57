"""The backup triggers: the nightly timer and `POST /api/backup` (admin key).

The schedule is the app setting BACKUP_SCHEDULE (NCRONTAB, UTC), resolved by the host from
`%BACKUP_SCHEDULE%`; nothing here reads it, so a missing value never breaks indexing (the
host reports that one function as in error). `use_monitor` lets the host catch up a run
missed while the app was down, which arrives with `past_due` set.

HTTP status of `POST /api/backup`: 200 when the run completed with no failed object; 207
(the report says what failed or is pending) when it finished partially; 409 when another
run holds the lease; the usual error envelope when it could not start. An HTTP-triggered
run starts nothing after 190 s and cuts copies in flight at 210 s (the front end drops requests at 230 s); the next run
carries on where it stopped.
"""

from __future__ import annotations

import logging

import azure.functions as func

from blueprints.http import handle_errors, json_response, query_flag
from crosscloud import backup
from crosscloud.backup.lease import LeaseHeld

bp = func.Blueprint()
log = logging.getLogger("crosscloud.backup")


@bp.function_name("backup_timer")
@bp.timer_trigger(arg_name="timer", schedule="%BACKUP_SCHEDULE%", run_on_startup=False, use_monitor=True)
def backup_timer(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.warning("backup timer is past due (a scheduled run was missed); running now")
    try:
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
    report = backup.run_configured(dry_run=dry_run, max_seconds=backup.HTTP_TIME_BUDGET_S)
    return json_response(report.as_json(), status=200 if report.ok else 207)
