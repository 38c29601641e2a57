"""GET /api/objects (combined listing) and GET /api/objects/{source}[/{*key}] (one object)."""

from __future__ import annotations

import azure.functions as func

from blueprints.http import SECURITY_HEADERS, handle_public_errors, json_response, query_flag
from crosscloud import listing, objects
from crosscloud.errors import BadRequest
from crosscloud.settings import Settings
from crosscloud.stores import factory

bp = func.Blueprint()


@bp.function_name("list_objects")
@bp.route(route="objects", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_public_errors
def list_objects(req: func.HttpRequest) -> func.HttpResponse:
    sources = listing.parse_source(req.params.get("source"))
    prefix = listing.parse_prefix(req.params.get("prefix"))
    limit = listing.parse_limit(req.params.get("limit"))
    settings = Settings()
    stores = {name: factory.store_for(name, settings) for name in sources}
    source = "all" if len(sources) > 1 else sources[0]  # a cursor binds the canonical name
    page = listing.list_objects(stores, source=source, prefix=prefix, limit=limit,
                                cursor=req.params.get("cursor") or None)
    return json_response(page.as_json())


@bp.function_name("get_object")
@bp.route(route="objects/{source}/{*key}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_public_errors
def get_object(req: func.HttpRequest) -> func.HttpResponse:
    source = req.route_params.get("source", "")
    if source not in factory.SOURCES:
        raise BadRequest(f"source must be azure or s3, got {source[:40]!r}", code="invalid_source")
    key = object_key(req)
    settings = Settings()
    store = factory.store_for(source, settings)
    if query_flag(req, "link"):
        return json_response(objects.short_lived_link(store, key, settings.link_ttl_seconds).as_json())
    result = objects.read_or_link(store, key, settings.download_max_bytes, settings.link_ttl_seconds)
    if isinstance(result, objects.Link):  # too large to pass through the function's memory
        return func.HttpResponse(status_code=307, headers={**SECURITY_HEADERS, "Location": result.url})
    info = result.info
    return func.HttpResponse(result.body, status_code=200, headers={
        **SECURITY_HEADERS,
        "Content-Type": info.content_type or "application/octet-stream",
        "Content-Length": str(len(result.body)),
        "ETag": f'"{info.etag}"',
        "Last-Modified": info.last_modified.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "Content-Disposition": "attachment",
    })


def object_key(req: func.HttpRequest) -> str:
    """The key from `?key=` (any key, percent-encoded) or from the path (plain keys only).

    The host's router removes `.`/`..` segments from the path and leaves `%2F` encoded in
    it, so a key only survives the path form if it has neither; `?key=` carries any key
    exactly, with the catch-all left empty (`/api/objects/{source}?key=...`).
    """
    in_path = req.route_params.get("key") or ""
    in_query = req.params.get("key")
    if in_query is not None and in_path:
        raise BadRequest("give the object key either in the path or as ?key=, not both", code="invalid_key")
    return objects.validate_key(in_query if in_query is not None else in_path)
