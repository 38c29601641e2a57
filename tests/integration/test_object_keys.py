"""Every legal key reads exactly that object, and no key reads another one (issue 10).

Against the local cloud: a second container of the same storage account holds a secret,
and the app's identity is trusted account-wide there (Azurite's OAuth has no RBAC scopes),
which is the production case the issue names: RBAC granted at account level. The library,
the HTTP function (`?key=`) and the CLI must never return that secret.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import azure.functions as func
import pytest
import requests

from blueprints.objects import get_object
from crosscloud import objects
from crosscloud.errors import BadRequest
from crosscloud.stores import factory

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SECRET = b"another container's secret"
# Keys both clouds keep exactly: the `?key=` form must read each one, byte for byte.
ODD_KEYS = ["a//b.txt", "trail/", "100%.txt", "x%2Fy.txt", "p+q.txt", "h#sh.txt", "q?uery.txt",
            "sp ace.txt", "日本/ü.txt", "%2e%2e/x", "&=;,$@!'()*.txt"]
# Keys with dot segments: S3 keeps them (botocore sends keys literally); Azure cannot hold them.
DOT_KEYS = ["dir/../plain.txt", "..", "./plain.txt", "dir/./plain.txt", "dir/."]


@pytest.fixture
def secret_container(devstack_env):
    """A second container in the same Azurite account, holding secret.txt (admin connection)."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(
        devstack_env["DEVSTACK_AZURE_CONNECTION_STRING"], connection_verify=devstack_env["REQUESTS_CA_BUNDLE"])
    name = f"secret-{uuid.uuid4().hex[:8]}"
    container = service.create_container(name)
    container.upload_blob("secret.txt", SECRET)
    yield name
    container.delete_container()


def traversals(prefix: str, container: str) -> list[str]:
    return [f"../{container}/secret.txt", f"{prefix}../../{container}/secret.txt", f"./../{container}/secret.txt",
            f"..\\{container}\\secret.txt", f"{prefix}x/..\\..\\..\\{container}/secret.txt"]


def call_get(source: str, key: str, **params: str) -> func.HttpResponse:
    """GET /api/objects/{source}?key=... as the worker hands it over: the catch-all empty."""
    return get_object(func.HttpRequest("GET", f"http://localhost/api/objects/{source}?key={quote(key, safe='')}",
                                       params={"key": key, **params}, route_params={"source": source}, body=b""))


def test_the_azure_store_never_reads_another_container(env, prefix, secret_container):
    """The hole: urllib3 and Azure remove dot segments, so `../<container>/x` left the container."""
    store = factory.azure_store()
    for key in traversals(prefix, secret_container):
        for attempt in (lambda k: store.open(k).info, store.stat, lambda k: store.link(k, 60),
                        lambda k: objects.read_or_link(store, k, 1 << 20, 60)):
            with pytest.raises(BadRequest) as excinfo:
                attempt(key)
            assert excinfo.value.code == "invalid_key"
            assert "another blob" in excinfo.value.message


def test_azure_dot_segments_never_read_a_sibling(env, prefix, azure_admin):
    """`fz/dir/../plain.txt` used to read `fz/plain.txt`; `..` alone used to be a 502."""
    azure_admin.upload_blob(f"{prefix}plain.txt", b"the sibling", overwrite=True)
    for key in [f"{prefix}dir/../plain.txt", f"{prefix}./plain.txt", "..", f"{prefix}plain.txt."]:
        response = call_get("azure", key)
        assert response.status_code == 400, (key, response.get_body())
        error = json.loads(response.get_body())["error"]
        assert error["code"] == "invalid_key"
        assert "ends with a dot" in error["message"]
        assert call_get("azure", key, link="true").status_code == 400


def test_http_traversal_to_another_container_is_400(env, prefix, secret_container):
    for key in traversals(prefix, secret_container):
        in_path = get_object(func.HttpRequest("GET", "http://localhost/api/objects/azure/x", params={},
                                              route_params={"source": "azure", "key": key}, body=b""))
        assert in_path.status_code == 400, key
        assert SECRET not in in_path.get_body()
        response = call_get("azure", key)
        assert response.status_code == 400, key
        assert SECRET not in response.get_body()
        link = call_get("azure", key, link="true")
        assert link.status_code == 400
        assert b"secret.txt?" not in link.get_body()


def test_cli_get_cannot_leave_the_container(env, prefix, secret_container, tmp_path):
    for key in traversals(prefix, secret_container)[:2]:
        result = subprocess.run([sys.executable, "-m", "crosscloud", "get", "azure", key, "-o", str(tmp_path / "o")],
                                cwd=ROOT, capture_output=True, env=dict(os.environ), timeout=120)
        assert result.returncode == 2, result.stderr
        assert b"another blob" in result.stderr
        assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("source", ["azure", "s3"])
def test_every_odd_key_reads_exactly_with_the_key_parameter(env, prefix, azure_admin, aws_admin, source):
    keys = [prefix + k for k in ODD_KEYS] + [f"/{prefix}leading-slash.txt"]
    for key in keys:
        data = f"{source}:{key}".encode()
        if source == "azure":
            azure_admin.upload_blob(key, data, overwrite=True)
        else:
            aws_admin.put_object(Bucket=env["S3_BUCKET"], Key=key, Body=data)
    for key in keys:
        response = call_get(source, key)
        assert response.status_code == 200, (key, response.get_body())
        assert response.get_body() == f"{source}:{key}".encode()
        link = json.loads(call_get(source, key, link="true").get_body())
        fetched = requests.get(link["url"], timeout=10, verify=env["REQUESTS_CA_BUNDLE"])
        assert fetched.content == f"{source}:{key}".encode(), key


def test_s3_keys_with_dot_segments_read_exactly(env, prefix, aws_admin):
    """S3 keeps `.`/`..` segments and botocore sends keys literally: each names itself."""
    aws_admin.put_object(Bucket=env["S3_BUCKET"], Key=f"{prefix}plain.txt", Body=b"the sibling")
    for key in DOT_KEYS:
        aws_admin.put_object(Bucket=env["S3_BUCKET"], Key=prefix + key, Body=f"s3:{key}".encode())
    for key in DOT_KEYS:
        response = call_get("s3", prefix + key)
        assert response.status_code == 200, key
        assert response.get_body() == f"s3:{key}".encode()


def test_key_in_both_the_path_and_the_query_is_400(env):
    request = func.HttpRequest("GET", "http://localhost/api/objects/s3/a?key=b", params={"key": "b"},
                               route_params={"source": "s3", "key": "a"}, body=b"")
    response = get_object(request)
    assert response.status_code == 400
    assert json.loads(response.get_body())["error"]["code"] == "invalid_key"


def test_empty_key_parameter_is_400(env):
    response = call_get("s3", "")
    assert response.status_code == 400
    assert "empty" in json.loads(response.get_body())["error"]["message"]
