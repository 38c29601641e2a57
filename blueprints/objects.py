"""GET /api/objects (combined listing) and GET /api/objects/{source}/{*key} (one object)."""

from __future__ import annotations

import azure.functions as func

from blueprints.http import SECURITY_HEADERS, handle_errors, json_response, query_flag
from crosscloud import listing, objects
from crosscloud.errors import BadRequest
from crosscloud.settings import Settings
from crosscloud.stores import factory

bp = func.Blueprint()


@bp.function_name("list_objects")
@bp.route(route="objects", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def list_objects(req: func.HttpRequest) -> func.HttpResponse:
    sources = listing.parse_source(req.params.get("source"))
    prefix = listing.parse_prefix(req.params.get("prefix"))
    limit = listing.parse_limit(req.params.get("limit"))
    settings = Settings()
    stores = {name: factory.store_for(name, settings) for name in sources}
    page = listing.list_objects(stores, source=req.params.get("source") or "all", prefix=prefix,
                                limit=limit, cursor=req.params.get("cursor") or None)
    return json_response(page.as_json())


@bp.function_name("get_object")
@bp.route(route="objects/{source}/{*key}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def get_object(req: func.HttpRequest) -> func.HttpResponse:
    source = req.route_params.get("source", "")
    if source not in factory.SOURCES:
        raise BadRequest(f"source must be azure or s3, got {source[:40]!r}", code="invalid_source")
    key = objects.validate_key(req.route_params.get("key"))
    settings = Settings()
    store = factory.store_for(source, settings)
    if query_flag(req, "link"):
        return json_response(objects.short_lived_link(store, key, settings.link_ttl_seconds).as_json())
    # Functions' Python HTTP responses are buffered, hence the cap: the body is read in
    # chunks from a stream whose size was checked first, and never above the cap.
    with objects.open_bounded(store, key, settings.download_max_bytes) as reader:
        body = b"".join(reader.iter_chunks())
        info = reader.info
    return func.HttpResponse(body, status_code=200, headers={
        **SECURITY_HEADERS,
        "Content-Type": info.content_type or "application/octet-stream",
        "Content-Length": str(len(body)),
        "ETag": f'"{info.etag}"',
        "Last-Modified": info.last_modified.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "Content-Disposition": "attachment",
    })
