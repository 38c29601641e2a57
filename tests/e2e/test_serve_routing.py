"""`devstack serve` routes like the Functions host (issue 10, the table's routing rows).

Each test names the host behaviour it copies. Requests go out with raw targets (http.client),
because requests/urllib3 would normalise dot segments before the host could.
"""

from __future__ import annotations

import json
import re

import pytest

pytestmark = pytest.mark.e2e


def _key(served) -> dict[str, str]:
    return {"x-functions-key": served.keys["DEVSTACK_HOST_KEY"]}


def _handled_by(served, target_path: str) -> str | None:
    """The function the host's log line names for the last request to `target_path`."""
    lines = re.findall(rf"GET {re.escape(target_path)} -> \d+ \((\w+|-),", served.log_text())
    return lines[-1] if lines else None


@pytest.mark.parametrize("path", ["/API/Health", "/api/HEALTH", "/api/health/", "/Api/Health/"])
def test_route_templates_match_case_insensitively_and_ignore_a_trailing_slash(served, path):
    """ASP.NET Core RoutePatternMatcher: literals compare OrdinalIgnoreCase; PathTokenizer drops
    a trailing '/'."""
    status, _, body = served.raw("GET", path)
    assert status == 200
    assert json.loads(body)["status"] == "ok"


@pytest.mark.parametrize("path", ["/api//health", "/api/health//"])
def test_an_empty_path_segment_matches_no_route(served, path):
    """RoutePatternMatcher: an empty segment (not the one trailing '/') never matches."""
    status, _, body = served.raw("GET", path)
    assert status == 404
    assert json.loads(body)["error"]["code"] == "route_not_found"


@pytest.mark.parametrize("source", ["azure", "s3"])
def test_dot_segments_are_removed_before_routing(served, azure_admin, aws_admin, devstack_env, prefix, source):
    """Kestrel's PathNormalizer.RemoveDotSegments (RFC 3986 5.2.4) runs on the decoded path before
    routing, so `k/../b` and `k/%2e%2e/b` reach get_object as key `b`, never as a key with `..`
    (S3 shows it: botocore sends a key literally, so `k/../b` would be another, absent key)."""
    if source == "azure":
        azure_admin.upload_blob(f"{prefix}b", b"bee", overwrite=True)
    else:
        aws_admin.put_object(Bucket=devstack_env["S3_BUCKET"], Key=f"{prefix}b", Body=b"bee")
    for raw in (f"/api/objects/{source}/{prefix}k/../b", f"/api/objects/{source}/{prefix}k/%2e%2e/b",
                f"/api/objects/{source}/{prefix}k/%2E%2E/./b"):
        status, _, body = served.raw("GET", raw, _key(served))
        assert (status, body) == (200, b"bee"), raw


def test_dot_segments_cannot_climb_out_of_the_route(served):
    """RemoveDotSegments works on the whole path: `/api/objects/azure/../../health` *is*
    `/api/health`, and `azure/../secret/x` is source `secret`, key `x` (refused by the app)."""
    status, _, body = served.raw("GET", "/api/objects/azure/%2e%2e/%2e%2e/health")
    assert status == 200
    assert json.loads(body)["status"] == "ok"
    assert _handled_by(served, "/api/objects/azure/%2e%2e/%2e%2e/health") == "health"
    status, _, body = served.raw("GET", "/api/objects/azure/../secret/secret.txt", _key(served))
    assert status == 400
    assert json.loads(body)["error"]["code"] == "invalid_source"


def test_an_encoded_slash_stays_encoded_in_the_route_value(served, azure_admin, prefix):
    """Kestrel's UrlDecoder never decodes %2F, so the catch-all value keeps `%2F`: the key read is
    `a%2Fb`, not `a/b`."""
    azure_admin.upload_blob(f"{prefix}a/b", b"slash", overwrite=True)
    azure_admin.upload_blob(f"{prefix}a%2Fb", b"encoded", overwrite=True)
    status, _, body = served.raw("GET", f"/api/objects/azure/{prefix}a%2Fb", _key(served))
    assert (status, body) == (200, b"encoded")
    status, _, body = served.raw("GET", f"/api/objects/azure/{prefix}caf%C3%A9%20x", _key(served))
    assert status == 404
    assert "café x" in json.loads(body)["error"]["message"]  # other escapes are decoded (UTF-8)


@pytest.mark.parametrize("path", ["/api/objects/azure", "/api/objects/azure/", "/API/objects/s3"])
def test_an_empty_catch_all_still_matches_get_object(served, path):
    """RoutePatternMatcher: a catch-all matches the empty string; the route value is then absent
    (the host drops null route values), and get_object itself answers."""
    status, _, body = served.raw("GET", path, _key(served))
    assert _handled_by(served, path) == "get_object"
    if status == 404:
        assert json.loads(body)["error"]["code"] != "route_not_found"


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/api/objects"), ("DELETE", "/api/objects/azure/x"), ("GET", "/api/backup"),
    ("PUT", "/api/health"), ("TRACE", "/api/health"), ("OPTIONS", "/api/health"), ("FOO", "/api/health"),
])
def test_a_method_outside_the_route_is_404_not_405(served, method, path):
    """The host maps `methods` to an HttpMethodRouteConstraint: another method is no match at
    all, so the answer is 404 (with a JSON body here), whatever the method."""
    status, headers, body = served.raw(method, path, _key(served))
    assert status == 404
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] == "route_not_found"


def test_head_is_not_get(served):
    """No implicit HEAD for GET routes in the host's router: 404, and no body on a HEAD answer."""
    status, headers, body = served.raw("HEAD", "/api/health")
    assert status == 404
    assert body == b""
    assert int(headers["content-length"]) > 0


def test_repeated_query_names_reach_the_function_joined(served):
    """The host's ToRpcHttp hands the worker each query name once, its values joined with ','
    (ASP.NET Core's StringValues): `?source=s3&source=azure` is the source "s3,azure"."""
    status, _, body = served.raw("GET", "/api/objects?source=s3&SOURCE=azure&limit=1", _key(served))
    assert status == 400
    assert "'s3,azure'" in json.loads(body)["error"]["message"]
