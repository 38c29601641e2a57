"""`POST /api/restore` (admin key): restore from the backup, bounded like `POST /api/backup`.

Query parameters: `prefix`, `as_of` (ISO-8601), `to_prefix`, `overwrite`, `dry_run`. Bad
input answers 400 naming the parameter, before anything is read or written. 200 when the
restore completed with no failed object, 207 with the report when it finished partially
(failures, or the time budget reached: run it again to continue; restored blobs are
skipped). Blobs left alone because they differ are counted in `skipped_newer`.
"""

from __future__ import annotations

import azure.functions as func

from blueprints.http import handle_errors, json_response, query_flag
from crosscloud import backup
from crosscloud.backup import restore

bp = func.Blueprint()


@bp.function_name("restore_now")
@bp.route(route="restore", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
@handle_errors
def restore_now(req: func.HttpRequest) -> func.HttpResponse:
    request = restore.parse_request(prefix=req.params.get("prefix"), as_of=req.params.get("as_of"),
                                    to_prefix=req.params.get("to_prefix"), overwrite=query_flag(req, "overwrite"))
    report = restore.run_configured(request, dry_run=query_flag(req, "dry_run"),
                                    max_seconds=backup.HTTP_TIME_BUDGET_S)
    return json_response(report.as_json(), status=200 if report.ok else 207)
