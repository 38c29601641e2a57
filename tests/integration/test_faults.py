"""Faults upstream: clear JSON errors, the right status, no partial list, nothing secret logged."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from crosscloud.stores import factory
from tests.integration.test_objects_api import body, call_get, call_list

pytestmark = pytest.mark.integration
JWT = re.compile(r"eyJ[\w-]{10,}\.[\w-]{10,}\.")


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A TCP endpoint that accepts connections and never answers: a cloud timing out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sts_refusal_names_the_role_in_the_log_and_lists_nothing(env, monkeypatch, azure_admin, prefix, caplog):
    azure_admin.upload_blob(prefix + "present.txt", b"x")
    monkeypatch.setenv("AZURE_CLIENT_ID", env["DEVSTACK_OTHER_CLIENT_ID"])
    response = call_list(prefix=prefix)
    assert response.status_code == 502
    error = body(response)["error"]
    assert error["code"] == "sts_accessDenied"
    assert env["AWS_ROLE_ARN"] not in error["message"]  # function-level: nothing about the deployment
    assert env["AWS_ROLE_ARN"] in caplog.text
    assert "items" not in body(response)  # Azure answered, but a half list is never passed off as whole
    assert "Retry-After" not in response.headers


def test_unknown_audience_names_the_audience_in_the_log(env, monkeypatch, caplog):
    monkeypatch.setenv("AWS_WEB_IDENTITY_AUDIENCE", "api://not-registered-anywhere")
    response = call_list(source="s3")
    assert response.status_code == 502
    error = body(response)["error"]
    assert "api://not-registered-anywhere" not in error["message"]
    assert "api://not-registered-anywhere" in caplog.text
    assert "AADSTS500011" in caplog.text


def test_missing_setting_is_named(env, monkeypatch):
    monkeypatch.delenv("AWS_ROLE_ARN")
    response = call_list(source="s3")
    assert response.status_code == 500
    error = body(response)["error"]
    assert error["code"] == "configuration_error"
    assert error["message"].startswith("app setting AWS_ROLE_ARN is missing or malformed")


def test_malformed_setting_is_named_without_its_value(env, monkeypatch):
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::210987654321:user/someone")
    error = body(call_list(source="s3"))["error"]
    assert error["message"].startswith("app setting AWS_ROLE_ARN is missing or malformed")
    assert "210987654321" not in error["message"]
    assert "123456789012" not in error["message"]  # nor the example in the detailed message


def test_identity_endpoint_down_is_503_with_retry_after(env, monkeypatch):
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{_closed_port()}/msi/token")
    started = time.monotonic()
    response = call_list(source="azure")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert "managed identity" in body(response)["error"]["message"] or \
        "identity" in body(response)["error"]["message"]
    assert time.monotonic() - started < 60


def test_s3_timing_out_is_503_with_retry_after(env, monkeypatch, blackhole):
    monkeypatch.setenv("UPSTREAM_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://{blackhole}")
    response = call_list()  # both clouds: Azure answers, S3 hangs
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert body(response)["error"]["code"] == "s3_unavailable"
    assert "items" not in body(response)


def test_azure_timing_out_is_503_with_retry_after(env, monkeypatch, blackhole):
    monkeypatch.setenv("UPSTREAM_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("AZURE_STORAGE_CONTAINER_URL", f"https://{blackhole}/devstoreaccount1/data")
    response = call_get("azure", "anything")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert body(response)["error"]["code"] == "azure_unavailable"


def test_nothing_secret_reaches_the_logs(env, monkeypatch, caplog, azure_admin, aws_admin, prefix):
    """Run every path, at DEBUG, then scan the captured logs for tokens, keys and signatures."""
    import blueprints  # noqa: F401 - applies the SDK logger guard, as the Function App does

    azure_admin.upload_blob(prefix + "f.txt", b"azure")
    aws_admin.put_object(Bucket=env["S3_BUCKET"], Key=prefix + "f.txt", Body=b"s3")
    caplog.set_level(logging.DEBUG)
    responses = [call_list(prefix=prefix), call_get("azure", prefix + "f.txt"), call_get("s3", prefix + "f.txt"),
                 call_get("azure", prefix + "f.txt", link="true"), call_get("s3", prefix + "f.txt", link="true"),
                 call_get("s3", prefix + "missing")]
    frozen = factory.s3_store().client._request_signer._credentials.get_frozen_credentials()
    monkeypatch.setenv("AZURE_CLIENT_ID", env["DEVSTACK_OTHER_CLIENT_ID"])
    responses.append(call_list(source="s3"))
    links = [body(r)["url"] for r in responses[3:5]]
    text = caplog.text + "\n".join(json.dumps(body(r)) for r in responses if r.mimetype == "application/json")
    assert caplog.records, "nothing was logged at all: the scan would prove nothing"
    assert not JWT.search(text)
    assert frozen.secret_key not in text
    assert frozen.token not in text
    assert "sig=" not in caplog.text
    assert "X-Amz-Signature" not in caplog.text
    assert env["DEVSTACK_AWS_ADMIN_SECRET_ACCESS_KEY"] not in text
    for link in links:
        assert link.split("?", 1)[1] not in caplog.text
