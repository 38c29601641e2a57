"""Reads over HTTP through `devstack serve`: any key with `?key=`, the 307 above the inline cap,
no way out of the container, and error bodies that say nothing about the deployment."""

from __future__ import annotations

import hashlib
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest
import requests

pytestmark = pytest.mark.e2e
ODD_KEYS = ["a//b.txt", "trail/", "100%.txt", "x%2Fy.txt", "p+q.txt", "h#sh.txt", "q?uery.txt", "sp ace.txt",
            "日本/ü.txt", "%2e%2e/x", "&=;,$@!'()*.txt"]
S3_DOT_KEYS = ["dir/../plain.txt", "./plain.txt", "dir/./plain.txt", "dir/."]
CAP = 4 * 1024 * 1024  # DOWNLOAD_MAX_BYTES' default


@pytest.fixture(scope="module")
def app(serve, devstack_env) -> dict[str, str]:
    return {"url": serve(), "key": devstack_env["DEVSTACK_FUNCTION_KEY"]}


def get(app: dict[str, str], source: str, key: str, **kwargs) -> requests.Response:
    """GET /api/objects/{source}?key=<percent-encoded key>, the catch-all left empty."""
    return requests.get(f"{app['url']}/api/objects/{source}?key={quote(key, safe='')}",
                        headers={"x-functions-key": app["key"]}, timeout=30, **kwargs)


@pytest.mark.parametrize("source", ["azure", "s3"])
def test_every_odd_key_reads_exactly(app, devstack_env, azure_admin, aws_admin, prefix, source):
    keys = [prefix + k for k in ODD_KEYS] + [f"/{prefix}leading-slash.txt"]
    keys += [prefix + k for k in S3_DOT_KEYS] if source == "s3" else []
    for key in keys:
        if source == "azure":
            azure_admin.upload_blob(key, f"{source}:{key}".encode(), overwrite=True)
        else:
            aws_admin.put_object(Bucket=devstack_env["S3_BUCKET"], Key=key, Body=f"{source}:{key}".encode())
    for key in keys:
        response = get(app, source, key)
        assert response.status_code == 200, (key, response.text)
        assert response.content == f"{source}:{key}".encode(), key
    via_params = requests.get(f"{app['url']}/api/objects/{source}", params={"key": keys[4]},  # p+q.txt
                              headers={"x-functions-key": app["key"]}, timeout=30)
    assert via_params.content == f"{source}:{keys[4]}".encode()


def test_no_key_form_reads_another_container(app, devstack_env, prefix):
    """The issue's hole, over HTTP: `..` in the key, literal or percent-encoded, is a 400."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(
        devstack_env["DEVSTACK_AZURE_CONNECTION_STRING"], connection_verify=devstack_env["REQUESTS_CA_BUNDLE"])
    name = f"secret-{uuid.uuid4().hex[:8]}"
    container = service.create_container(name)
    try:
        container.upload_blob("secret.txt", b"SECRET BYTES")
        headers = {"x-functions-key": app["key"]}
        for key in [f"../{name}/secret.txt", f"{prefix}../../{name}/secret.txt", f"..\\{name}\\secret.txt"]:
            for response in (get(app, "azure", key), get(app, "azure", key, params={"link": "true"})):
                assert response.status_code == 400, (key, response.text)
                assert response.json()["error"]["code"] == "invalid_key"
                assert b"SECRET" not in response.content
        for path in [f"%2e%2e/{name}/secret.txt", f"%2E%2E%2F{name}%2Fsecret.txt"]:
            response = requests.get(f"{app['url']}/api/objects/azure/{path}", headers=headers, timeout=30)
            assert response.status_code in (400, 404), (path, response.text)
            assert b"SECRET" not in response.content
    finally:
        container.delete_container()


@pytest.mark.parametrize("source", ["azure", "s3"])
def test_above_the_cap_a_307_sends_the_client_to_the_cloud(app, devstack_env, azure_admin, aws_admin, prefix,
                                                            source):
    data = os.urandom(CAP + 1)
    key = f"{prefix}big ü.bin"
    if source == "azure":
        azure_admin.upload_blob(key, data, overwrite=True)
    else:
        aws_admin.put_object(Bucket=devstack_env["S3_BUCKET"], Key=key, Body=data)
    redirect = get(app, source, key, allow_redirects=False)
    assert redirect.status_code == 307
    assert redirect.content == b""
    followed = get(app, source, key, verify=devstack_env["REQUESTS_CA_BUNDLE"])
    assert followed.status_code == 200
    assert [r.status_code for r in followed.history] == [307]
    assert hashlib.sha256(followed.content).digest() == hashlib.sha256(data).digest()
    link = get(app, source, key, params={"link": "true"})
    assert link.status_code == 200
    assert set(link.json()) == {"url", "expires_at"}


def test_at_the_cap_concurrent_reads_are_inline_and_exact(app, devstack_env, aws_admin, prefix):
    data = os.urandom(CAP)
    aws_admin.put_object(Bucket=devstack_env["S3_BUCKET"], Key=f"{prefix}cap.bin", Body=data)
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: get(app, "s3", f"{prefix}cap.bin", allow_redirects=False), range(4)))
    assert [r.status_code for r in responses] == [200] * 4
    assert all(r.content == data for r in responses)


def test_not_found_and_bad_input_are_scanned(app, scanned_errors, prefix):
    before = len(scanned_errors)
    for source in ("azure", "s3"):
        assert get(app, source, f"{prefix}missing").status_code == 404
        assert requests.get(f"{app['url']}/api/objects/{source}/{prefix}missing?link=true",
                            headers={"x-functions-key": app["key"]}, timeout=30).status_code == 404
    assert get(app, "gcs", "x").status_code == 400
    assert get(app, "azure", "..").status_code == 400
    assert requests.get(f"{app['url']}/api/objects", params={"cursor": "junk"}, headers={
        "x-functions-key": app["key"]}, timeout=30).status_code == 400
    assert before == len(scanned_errors)  # recorded at teardown, checked there


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"AZURE_CLIENT_ID": "DEVSTACK_OTHER_CLIENT_ID"}, [("read", "s3", "sts_accessDenied"),
                                                     ("list", "s3", "sts_accessDenied")]),
    ({"AWS_ROLE_ARN": "AWS_BACKUP_ROLE_ARN"}, [("read", "s3", "s3_forbidden"), ("link", "s3", "s3_forbidden")]),
    ({"S3_BUCKET": "crosscloud-nope", "AZURE_STORAGE_CONTAINER_URL": "container:nope"},
     [("read", "s3", None), ("list", "s3", None), ("list", "all", None),
      ("read", "azure", "azure_container_not_found"), ("list", "azure", "azure_container_not_found")]),
], ids=["untrusted-identity", "role-without-rights", "missing-bucket-and-container"])
def test_deployment_failures_tell_the_caller_nothing_about_the_deployment(
        serve, devstack_env, aws_admin, azure_admin, prefix, overrides, expected):
    """Federation refused, a role without rights, missing resources: each a 5xx whose body the
    scan checks (the details go to that host's log instead)."""
    values = {}
    for name, value in overrides.items():
        if value in devstack_env:
            value = devstack_env[value]
        elif value.startswith("container:"):
            value = devstack_env["AZURE_STORAGE_CONTAINER_URL"].rsplit("/", 1)[0] + "/" + value.split(":")[1]
        values[name] = value
    url = serve(values)
    aws_admin.put_object(Bucket=devstack_env["S3_BUCKET"], Key=f"{prefix}x.txt", Body=b"x")
    azure_admin.upload_blob(f"{prefix}x.txt", b"x", overwrite=True)
    headers = {"x-functions-key": devstack_env["DEVSTACK_FUNCTION_KEY"]}
    for route, source, code in expected:
        if route == "list":
            params = {"source": source, "prefix": prefix}
            response = requests.get(f"{url}/api/objects", params=params, headers=headers, timeout=60)
        else:
            params = {"key": f"{prefix}x.txt", **({"link": "true"} if route == "link" else {})}
            response = requests.get(f"{url}/api/objects/{source}", params=params, headers=headers, timeout=60)
        assert response.status_code >= 500, (route, source, response.text)
        error = response.json()["error"]
        if code:
            assert error["code"] == code
        assert "diagnostics" in error["message"]
