"""GET /api/health: liveness only. No settings read, no cloud called, nothing secret."""

import azure.functions as func

from blueprints.http import json_response
from crosscloud import __version__

bp = func.Blueprint()


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    return json_response({"status": "ok", "version": __version__})
