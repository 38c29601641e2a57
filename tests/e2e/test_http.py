"""End to end over HTTP: `python -m devstack serve` hosting function_app, against the local cloud."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from tests.e2e.conftest import await_health

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def host(devstack_env, tmp_path_factory) -> Iterator[dict[str, str]]:
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    url = devstack_env["DEVSTACK_FUNCTIONS_URL"]
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "devstack", "serve"], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        await_health(url, proc, log)
        yield {"url": url, "log": str(log), "key": devstack_env["DEVSTACK_FUNCTION_KEY"],
               "master": devstack_env["DEVSTACK_MASTER_KEY"]}
    finally:
        proc.terminate()
        proc.wait(10)


def test_health_is_anonymous(host):
    response = requests.get(f"{host['url']}/api/health", timeout=5)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.parametrize("headers", [{}, {"x-functions-key": "wrong"}])
def test_listing_requires_a_function_key(host, headers):
    assert requests.get(f"{host['url']}/api/objects", headers=headers, timeout=5).status_code == 401


def test_admin_route_refuses_the_function_key(host):
    response = requests.post(f"{host['url']}/admin/functions/backup_timer",
                             headers={"x-functions-key": host["key"]}, timeout=5)
    assert response.status_code == 401


def test_combined_listing_and_reads_over_http(host, devstack_env, azure_admin, aws_admin, prefix):
    azure_admin.upload_blob(f"{prefix}dir/hello wörld.txt", b"from azure", overwrite=True)
    aws_admin.put_object(Bucket=devstack_env["S3_BUCKET"], Key=f"{prefix}dir/hello wörld.txt", Body=b"from s3",
                         ContentType="text/plain")
    aws_admin.put_object(Bucket=devstack_env["S3_BUCKET"], Key=f"{prefix}second", Body=b"2")
    headers = {"x-functions-key": host["key"]}
    first = requests.get(f"{host['url']}/api/objects", params={"prefix": prefix, "limit": 2}, headers=headers,
                         timeout=30)
    assert first.status_code == 200, first.text
    page = first.json()
    assert [(i["source"], i["key"]) for i in page["items"]] == [
        ("azure", f"{prefix}dir/hello wörld.txt"), ("s3", f"{prefix}dir/hello wörld.txt")]
    second = requests.get(f"{host['url']}/api/objects",
                          params={"prefix": prefix, "limit": 2, "cursor": page["next_cursor"], "code": host["key"]},
                          timeout=30).json()
    assert [(i["source"], i["key"]) for i in second["items"]] == [("s3", f"{prefix}second")]
    assert second["next_cursor"] is None

    path = quote(f"{prefix}dir/hello wörld.txt")
    s3_body = requests.get(f"{host['url']}/api/objects/s3/{path}", headers=headers, timeout=30)
    assert s3_body.status_code == 200
    assert s3_body.content == b"from s3"
    assert s3_body.headers["Content-Type"].startswith("text/plain")
    azure_body = requests.get(f"{host['url']}/api/objects/azure/{path}", headers=headers, timeout=30)
    assert azure_body.content == b"from azure"
    link = requests.get(f"{host['url']}/api/objects/azure/{path}", params={"link": "true"}, headers=headers,
                        timeout=30).json()
    assert requests.get(link["url"], verify=devstack_env["REQUESTS_CA_BUNDLE"], timeout=10).content == b"from azure"


def test_errors_are_json_over_http(host):
    headers = {"x-functions-key": host["key"]}
    bad = requests.get(f"{host['url']}/api/objects", params={"limit": "many"}, headers=headers, timeout=10)
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_limit"
    missing = requests.get(f"{host['url']}/api/objects/s3/no/such/key", headers=headers, timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_host_log_holds_no_key_token_or_signature(host):
    requests.get(f"{host['url']}/api/objects", params={"code": host["key"], "limit": 1}, timeout=30)
    time.sleep(0.2)
    log = Path(host["log"]).read_text()
    assert "/api/objects" in log  # the log is really being written
    assert host["key"] not in log
    assert host["master"] not in log
    assert not re.search(r"eyJ[\w-]{10,}\.[\w-]{10,}\.", log)
    assert "X-Amz-Signature" not in log
    assert "sig=" not in log


def test_listing_over_http_resumes_each_cloud_in_its_order_and_refuses_bad_input(host, azure_admin, prefix):
    """Issues 11 and 14 over the host: Azure's `a～` after `a😀` is not skipped on resume;
    non-ASCII digits in `limit` and a forged cursor with made-up page tokens are 400."""
    for key in ("a0", "a😀", "a～", "b"):
        azure_admin.upload_blob(prefix + key, b"x", overwrite=True)
    url, params, seen = f"{host['url']}/api/objects", {"prefix": prefix, "source": "azure", "limit": "2",
                                                       "code": host["key"]}, []
    while True:
        page = requests.get(url, params=params, timeout=30).json()
        seen += [i["key"][len(prefix):] for i in page["items"]]
        if not page["next_cursor"]:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == ["a0", "a😀", "a～", "b"]
    for limit in ("١٢", "𝟓"):
        response = requests.get(url, params={"limit": limit, "code": host["key"]}, timeout=30)
        assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_limit")
    body = b'{"v":1,"s":"all","p":"","pos":{"azure":["made-up",null],"s3":["made-up",null]}}'
    mac = hmac.new(b"crosscloud-listing-cursor-v1", body, hashlib.sha256).digest()[:12]  # the old, public key
    forged = base64.urlsafe_b64encode(mac + body).rstrip(b"=").decode()
    response = requests.get(url, params={"cursor": forged, "code": host["key"]}, timeout=30)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_cursor")


def test_restore_over_http_needs_the_admin_key_and_restores(host, azure_admin, prefix, monkeypatch):
    from crosscloud import backup
    from crosscloud.stores import factory

    azure_admin.upload_blob(f"{prefix}dir/ü.txt", b"restore me", overwrite=True)
    monkeypatch.setenv("BACKUP_SOURCE_PREFIX", prefix)  # the host's BACKUP_S3_PREFIX, only this test's blobs
    factory.reset_for_tests()
    assert backup.run_configured().copied == 1
    url, side = f"{host['url']}/api/restore", f"side-{prefix}"
    params = {"prefix": prefix, "to_prefix": side}
    assert requests.post(url, params=params, headers={"x-functions-key": host["key"]}, timeout=30).status_code == 401
    bad = requests.post(url, params={**params, "as_of": "soon"}, headers={"x-functions-key": host["master"]},
                        timeout=30)
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_as_of"
    done = requests.post(url, params=params, headers={"x-functions-key": host["master"]}, timeout=120)
    assert done.status_code == 200, done.text
    assert (done.json()["copied"], done.json()["skipped_newer"]) == (1, 0)
    assert azure_admin.download_blob(f"{side}{prefix}dir/ü.txt").readall() == b"restore me"
    again = requests.post(url, params=params, headers={"x-functions-key": host["master"]}, timeout=120).json()
    assert (again["copied"], again["skipped"]) == (0, 1)
