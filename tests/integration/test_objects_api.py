"""GET /api/objects and GET /api/objects/{source}/{*key} against the local cloud.

The functions are called as the worker calls them (func.HttpRequest in, HttpResponse out);
everything below them is real: managed-identity tokens, STS, Azurite, S3 with IAM.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor

import azure.functions as func
import pytest
import requests

from blueprints.objects import get_object, list_objects

pytestmark = pytest.mark.integration

AZURE_KEYS = ["a b/ü 1.txt", "a b/ü 2.txt", "plain.txt", "x/#?%+.bin", "x/日本.txt", "z", "zz/deep/er/k"]
S3_KEYS = ["a b/ü 1.txt", "b.txt", "plain.txt", "x/#?%+.bin", "y/space here", "zz/deep/er/k"]


def call_list(**params: str) -> func.HttpResponse:
    return list_objects(func.HttpRequest("GET", "http://localhost/api/objects", params=params, body=b""))


def call_get(source: str, key: str, **params: str) -> func.HttpResponse:
    return get_object(func.HttpRequest("GET", f"http://localhost/api/objects/{source}/{key}", params=params,
                                       route_params={"source": source, "key": key}, body=b""))


def body(response: func.HttpResponse) -> dict:
    return json.loads(response.get_body())


@pytest.fixture
def seeded(env, prefix, azure_admin, aws_admin):
    for key in AZURE_KEYS:
        azure_admin.upload_blob(prefix + key, f"azure:{key}".encode(), overwrite=True)
    for key in S3_KEYS:
        aws_admin.put_object(Bucket=env["S3_BUCKET"], Key=prefix + key, Body=f"s3:{key}".encode(),
                             ContentType="text/plain")
    return prefix


def test_multi_page_listing_returns_everything_once_in_order(seeded):
    seen, cursor, pages = [], None, 0
    while True:
        params = {"prefix": seeded, "limit": "4", **({"cursor": cursor} if cursor else {})}
        response = call_list(**params)
        assert response.status_code == 200, response.get_body()
        page = body(response)
        assert len(page["items"]) <= 4
        seen.extend(page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    expected = sorted([(seeded + k, "azure") for k in AZURE_KEYS] + [(seeded + k, "s3") for k in S3_KEYS],
                      key=lambda t: (t[0].encode(), t[1]))
    assert [(i["key"], i["source"]) for i in seen] == expected
    assert pages == -(-len(expected) // 4)
    item = next(i for i in seen if i["source"] == "s3" and i["key"].endswith("b.txt"))
    assert item["size"] == len(b"s3:b.txt")
    assert item["etag"] == hashlib.md5(b"s3:b.txt").hexdigest()  # noqa: S324 - S3's ETag is MD5
    assert item["last_modified"].endswith("Z")


@pytest.mark.parametrize(("source", "keys"), [("azure", AZURE_KEYS), ("s3", S3_KEYS)])
def test_single_source_and_nested_prefix(seeded, source, keys):
    response = call_list(source=source, prefix=seeded + "x/")
    items = body(response)["items"]
    assert [i["key"] for i in items] == [seeded + k for k in keys if k.startswith("x/")]
    assert {i["source"] for i in items} == {source}


def test_unicode_prefix(seeded):
    items = body(call_list(prefix=seeded + "a b/ü"))["items"]
    assert [(i["source"], i["key"]) for i in items] == [
        ("azure", seeded + "a b/ü 1.txt"), ("s3", seeded + "a b/ü 1.txt"), ("azure", seeded + "a b/ü 2.txt")]


@pytest.mark.parametrize("source", ["azure", "s3"])
@pytest.mark.parametrize("key", ["x/#?%+.bin", "plain.txt"])
def test_read_object(seeded, source, key):
    response = call_get(source, seeded + key)
    assert response.status_code == 200
    assert response.get_body() == f"{source}:{key}".encode()
    assert response.headers["Content-Length"] == str(len(response.get_body()))
    assert response.headers["ETag"].startswith('"')
    assert response.headers["Content-Type"] in ("text/plain", "application/octet-stream")


@pytest.mark.parametrize("source", ["azure", "s3"])
def test_read_missing_object_is_404(env, prefix, source):
    response = call_get(source, prefix + "nope")
    assert response.status_code == 404
    assert body(response)["error"]["code"] == "not_found"


@pytest.mark.parametrize("source", ["azure", "s3"])
def test_link_is_short_lived_and_works(seeded, env, source):
    response = call_get(source, seeded + "a b/ü 1.txt", link="true")
    assert response.status_code == 200
    link = body(response)
    fetched = requests.get(link["url"], timeout=10, verify=env["REQUESTS_CA_BUNDLE"])
    assert fetched.status_code == 200
    assert fetched.content == f"{source}:a b/ü 1.txt".encode()
    assert link["expires_at"].endswith("Z")


@pytest.mark.parametrize("source", ["azure", "s3"])
def test_link_to_missing_object_is_404(env, prefix, source):
    assert call_get(source, prefix + "missing", link="true").status_code == 404


@pytest.mark.parametrize("source", ["azure", "s3"])
def test_object_over_the_cap_is_a_307_to_a_link_that_serves_it(env, prefix, azure_admin, aws_admin, monkeypatch,
                                                                source):
    """Above DOWNLOAD_MAX_BYTES the bytes never pass through the function: 307 to the cloud."""
    data = os.urandom(64 * 1024 + 1)
    if source == "azure":
        azure_admin.upload_blob(f"{prefix}big.bin", data, overwrite=True)
    else:
        aws_admin.put_object(Bucket=env["S3_BUCKET"], Key=f"{prefix}big.bin", Body=data)
    monkeypatch.setenv("DOWNLOAD_MAX_BYTES", str(64 * 1024))
    response = call_get(source, f"{prefix}big.bin")
    assert response.status_code == 307
    assert response.get_body() == b""
    assert response.headers["Cache-Control"] == "no-store"
    fetched = requests.get(response.headers["Location"], timeout=10, verify=env["REQUESTS_CA_BUNDLE"])
    assert fetched.status_code == 200
    assert hashlib.sha256(fetched.content).digest() == hashlib.sha256(data).digest()
    monkeypatch.setenv("DOWNLOAD_MAX_BYTES", str(64 * 1024 + 1))  # at the cap: inline, exactly
    inline = call_get(source, f"{prefix}big.bin")
    assert inline.status_code == 200
    assert inline.get_body() == data


def test_bad_download_max_bytes_names_the_setting_to_the_log_only(seeded, monkeypatch, caplog):
    monkeypatch.setenv("DOWNLOAD_MAX_BYTES", str(1 << 30))
    response = call_get("s3", seeded + "plain.txt")
    assert response.status_code == 500
    assert body(response)["error"]["code"] == "configuration_error"
    assert "DOWNLOAD_MAX_BYTES" in caplog.text


@pytest.mark.parametrize(("params", "code"), [
    ({"source": "gcs"}, "invalid_source"),
    ({"limit": "ten"}, "invalid_limit"),
    ({"limit": "0"}, "invalid_limit"),
    ({"limit": "-5"}, "invalid_limit"),
    ({"limit": "5001"}, "invalid_limit"),
    ({"cursor": "garbage"}, "invalid_cursor"),
])
def test_bad_listing_input_is_400(env, params, code):
    response = call_list(**params)
    assert response.status_code == 400
    assert body(response)["error"]["code"] == code


def test_truncated_cursor_is_400(seeded):
    cursor = body(call_list(prefix=seeded, limit="2"))["next_cursor"]
    response = call_list(prefix=seeded, limit="2", cursor=cursor[: len(cursor) // 2])
    assert response.status_code == 400
    assert body(response)["error"]["code"] == "invalid_cursor"


@pytest.mark.parametrize(("source", "key", "code"), [
    ("gcs", "a", "invalid_source"),
    ("s3", "", "invalid_key"),
    ("azure", "bad\x01key", "invalid_key"),
    ("s3", "line\nbreak", "invalid_key"),
])
def test_bad_read_input_is_400(env, source, key, code):
    response = call_get(source, key)
    assert response.status_code == 400
    assert body(response)["error"]["code"] == code


def test_200_concurrent_listings_make_exactly_one_sts_call(env, seeded, stats):
    before = stats().get("aws:AssumeRoleWithWebIdentity:ok", 0)
    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(lambda _: call_list(prefix=seeded, limit="3").status_code, range(200)))
    assert statuses == [200] * 200
    assert stats().get("aws:AssumeRoleWithWebIdentity:ok", 0) - before == 1
