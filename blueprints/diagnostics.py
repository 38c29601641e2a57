"""GET /api/diagnostics (admin): the federation doctor's report as JSON.

200 when no check failed (warnings allowed), 503 with the same report when any did, so a
probe or alert can key off the status while scripts read `ok` and each check. No
Retry-After: a broken trust does not heal by retrying. Admin level, because the report
names identities, tenant, roles and buckets (never a token or credential).
"""

from __future__ import annotations

import azure.functions as func

from blueprints.http import handle_errors, json_response
from crosscloud.doctor import runner

bp = func.Blueprint()


@bp.function_name("diagnostics")
@bp.route(route="diagnostics", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
@handle_errors
def run_diagnostics(req: func.HttpRequest) -> func.HttpResponse:
    report = runner.run()
    return json_response(report.as_json(), 200 if report.ok else 503)
