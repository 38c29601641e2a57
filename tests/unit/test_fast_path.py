"""The lean paths' request/response layer with a fake pool, and the SDK internals they lean on.

Each `test_sdk_internal_*` fails naming the internal when an SDK release changes it; the
fast path must then be re-checked against that release's behaviour.
"""

from __future__ import annotations

import base64
import hashlib
import urllib.request
from typing import Any

import boto3
import pytest
import urllib3
from azure.storage.blob import ExponentialRetry

from crosscloud.errors import IdentityError, NotFound, PreconditionFailed, UpstreamError
from crosscloud.settings import ContainerUrl
from crosscloud.stores import fast_azure, fast_s3, transport
from crosscloud.stores.azure import RETRY
from crosscloud.stores.base import PutOptions

LAST_MODIFIED = "Wed, 25 Nov 2026 10:00:00 GMT"


class FakeResponse:
    def __init__(self, status: int, headers: dict[str, str], body: bytes = b"", fail: Exception | None = None):
        self.status, self.headers, self._body, self._fail = status, urllib3.HTTPHeaderDict(headers), body, fail
        self.released = False

    def read(self) -> bytes:
        if self._fail is not None:
            raise self._fail
        return self._body

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        self.released = True


class FakePools:
    """Answers requests from a script; an exception in the script is raised by `request`."""

    def __init__(self, *script: Any):
        self.script = list(script)
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    def request(self, method: str, url: str, headers: dict[str, str], **_: Any) -> Any:
        self.requests.append((method, url, headers))
        answer = self.script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Token:
    def __init__(self) -> None:
        self.asked = 0

    def get_token(self, *scopes: str, **_: Any) -> Any:
        self.asked += 1
        assert scopes == ("https://storage.azure.com/.default",)
        return type("T", (), {"token": f"token-{self.asked}"})()


def reader(pools: FakePools, sleeps: list[float]) -> tuple[fast_azure.FastBlobReader, Token]:
    token = Token()
    container = ContainerUrl("https://127.0.0.1:1/acct/data", "https://127.0.0.1:1/acct", "data")
    return fast_azure.FastBlobReader(container, token, who="the identity", api_version="2025-01-05",
                                     pools=pools, retry=ExponentialRetry(**RETRY), sleep=sleeps.append), token


def ok(body: bytes, **extra: str) -> FakeResponse:
    md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
    return FakeResponse(200, {"Content-Length": str(len(body)), "Last-Modified": LAST_MODIFIED, "ETag": '"0x1"',
                              "Content-Type": "text/plain", "Content-MD5": md5, **extra}, body)


def test_azure_read_sends_a_fresh_bearer_token_each_time_and_parses_the_properties():
    pools, sleeps = FakePools(ok(b"hello", **{"x-ms-meta-Owner": "a"}), ok(b"again")), []
    lean, token = reader(pools, sleeps)
    got = lean.open("dir/a b.txt", 100)
    assert got is not None
    assert b"".join(got.iter_chunks()) == b"hello"
    assert (got.info.size, got.info.etag, got.info.metadata, got.info.content_type) == (5, "0x1", {"Owner": "a"},
                                                                                        "text/plain")
    assert got.info.content_md5 == hashlib.md5(b"hello", usedforsecurity=False).digest()
    lean.open("b", 100)
    (_, url, headers), (_, _, second) = pools.requests
    assert url == "https://127.0.0.1:1/acct/data/dir/a%20b.txt"
    assert (headers["Authorization"], second["Authorization"]) == ("Bearer token-1", "Bearer token-2")
    assert headers["x-ms-version"] == "2025-01-05"


def test_azure_read_of_a_blob_above_the_limit_is_left_to_the_sdk():
    lean, _ = reader(FakePools(ok(b"x" * 10)), [])
    assert lean.open("a", 9) is None


def test_azure_server_busy_waits_at_least_retry_after_and_5xx_exhausts_the_sdk_limit():
    busy = FakeResponse(503, {"Retry-After": "7", "x-ms-error-code": "ServerBusy"})
    sleeps: list[float] = []
    lean, _ = reader(FakePools(busy, ok(b"x")), sleeps)
    assert lean.open("a", 10) is not None
    assert sleeps[0] >= 7
    error = FakeResponse(500, {"x-ms-error-code": "InternalError"})
    sleeps = []
    lean, _ = reader(FakePools(*[error] * 4), sleeps)
    with pytest.raises(UpstreamError) as failed:
        lean.open("a", 10)
    assert (failed.value.code, failed.value.status) == ("azure_error", 503)
    assert len(sleeps) == 3  # retry_total=3: four requests, as the storage policy makes


def test_azure_connection_errors_are_retried_then_named_without_the_url():
    reset = urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError())
    lean, _ = reader(FakePools(reset, ok(b"x")), [])
    assert lean.open("a", 10) is not None
    lean, _ = reader(FakePools(*[urllib3.exceptions.NewConnectionError(None, "refused")] * 4), [])
    with pytest.raises(UpstreamError) as failed:
        lean.open("a", 10)
    assert failed.value.code == "azure_unavailable"
    assert "127.0.0.1" not in failed.value.message


@pytest.mark.parametrize(("status", "code", "expected"), [
    (404, "BlobNotFound", NotFound), (404, "ContainerNotFound", "azure_container_not_found"),
    (403, "AuthorizationPermissionMismatch", "azure_forbidden"), (400, "InvalidHeaderValue", "azure_error"),
])
def test_azure_refusals_map_to_the_store_codes(status, code, expected):
    lean, _ = reader(FakePools(FakeResponse(status, {"x-ms-error-code": code})), [])
    with pytest.raises((NotFound, UpstreamError)) as failed:
        lean.open("a", 10)
    if isinstance(expected, str):
        assert failed.value.code == expected
    else:
        assert isinstance(failed.value, expected)


def test_azure_identity_failures_pass_through_named():
    lean, token = reader(FakePools(), [])

    def refuse(*_: Any, **__: Any) -> Any:
        raise IdentityError("the identity could not get a token")

    token.get_token = refuse  # type: ignore[method-assign]
    with pytest.raises(IdentityError):
        lean.open("a", 10)


def s3_client(**config: Any) -> Any:
    from crosscloud.auth.federation import client_config

    return boto3.client("s3", endpoint_url="http://127.0.0.1:9", region_name="eu-west-1", aws_access_key_id="AK",
                        aws_secret_access_key="SK", config=client_config(**config))


def putter(pools: FakePools, sleeps: list[float]) -> fast_s3.FastPutter:
    client = s3_client()
    return fast_s3.FastPutter(client, client._request_signer._credentials, "bucket", role_arn="arn:role",  # noqa: SLF001
                              pools=pools, sleep=sleeps.append)


class Body:
    def __init__(self, data: bytes):
        self.data = data

    def read(self, size: int = -1) -> bytes:
        data, self.data = self.data, b""
        return data


SLOWDOWN = b"<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>"


def test_s3_put_is_signed_by_botocore_and_reports_the_checksum():
    digest = base64.b64encode(hashlib.sha256(b"data").digest()).decode()
    pools = FakePools(FakeResponse(200, {"ETag": '"e1"', "x-amz-checksum-sha256": digest}))
    result = putter(pools, []).put("a b/c.txt", Body(b"data"), 4, PutOptions(
        content_type="text/plain", metadata={"k": "v"}, if_none_match=True))
    assert (result.etag, result.checksum_sha256) == ("e1", digest)
    method, url, headers = pools.requests[0]
    assert (method, url) == ("PUT", "http://127.0.0.1:9/bucket/a%20b/c.txt")
    assert headers["x-amz-checksum-sha256"] == digest
    assert headers["x-amz-meta-k"] == "v"
    assert headers["If-None-Match"] == "*"
    assert headers["Content-Type"] == "text/plain"
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AK/")
    assert "/eu-west-1/s3/aws4_request" in headers["Authorization"]
    assert headers["X-Amz-Content-SHA256"] == hashlib.sha256(b"data").hexdigest()  # http: payload signed


def test_s3_throttling_is_retried_with_botocores_backoff_then_fails_with_the_store_code():
    slow = FakeResponse(503, {}, SLOWDOWN)
    sleeps: list[float] = []
    pools = FakePools(*[slow] * 10)
    lean = putter(pools, sleeps)
    attempts = s3_client().meta.config.retries["total_max_attempts"]  # the client's own limit
    with pytest.raises(UpstreamError) as failed:
        lean.put("k", Body(b"x"), 1, PutOptions())
    assert (failed.value.code, failed.value.status, failed.value.message) == ("s3_error", 503,
                                                                               "S3 write failed: SlowDown")
    assert len(pools.requests) == attempts
    assert len(sleeps) == attempts - 1


@pytest.mark.parametrize(("status", "body", "expected"), [
    (403, b"<Error><Code>AccessDenied</Code><Message>no</Message></Error>", "s3_forbidden"),
    (412, b"<Error><Code>PreconditionFailed</Code><Message>no</Message></Error>", PreconditionFailed),
    (404, b"<Error><Code>NoSuchBucket</Code><Message>no</Message></Error>", "s3_no_such_bucket"),
])
def test_s3_refusals_map_to_the_store_codes(status, body, expected):
    with pytest.raises((PreconditionFailed, UpstreamError)) as failed:
        putter(FakePools(FakeResponse(status, {}, body)), []).put("k", Body(b"x"), 1, PutOptions())
    if isinstance(expected, str):
        assert failed.value.code == expected
    else:
        assert isinstance(failed.value, expected)


def test_s3_reset_is_retried_then_named():
    reset = urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError())
    pools = FakePools(reset, FakeResponse(200, {"ETag": '"e"'}))
    assert putter(pools, []).put("k", Body(b"x"), 1, PutOptions()).etag == "e"
    with pytest.raises(UpstreamError) as failed:
        putter(FakePools(*[reset] * 5), []).put("k", Body(b"x"), 1, PutOptions())
    assert failed.value.code == "s3_error"
    assert failed.value.status == 503


# --- the SDK internals the fast path leans on ----------------------------------------------------
def test_sdk_internal_botocore_client_resolve_endpoint_ruleset(monkeypatch):
    """fast_s3.bucket_endpoint uses `BaseClient._resolve_endpoint_ruleset` (private)."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):  # set when the local cloud's settings are applied
        monkeypatch.delenv(name, raising=False)
    client = s3_client()
    assert hasattr(client, "_resolve_endpoint_ruleset"), "botocore removed BaseClient._resolve_endpoint_ruleset"
    assert fast_s3.bucket_endpoint(client, "bucket") == ("http://127.0.0.1:9/bucket", "eu-west-1", "s3")
    virtual = boto3.client("s3", region_name="eu-west-1", aws_access_key_id="a", aws_secret_access_key="b")
    assert fast_s3.bucket_endpoint(virtual, "bucket")[0] == "https://bucket.s3.eu-west-1.amazonaws.com"


def test_sdk_internal_botocore_standard_retry_classes_and_total_max_attempts():
    """fast_s3.retry_handler has botocore.retries.standard.register_retry_handler build the
    handler (its signature differs across versions: ours must not build it by hand)."""
    assert callable(getattr(fast_s3.standard, "register_retry_handler", None)), \
        "botocore.retries.standard.register_retry_handler changed"
    client = s3_client(max_attempts=4)
    handler = fast_s3.retry_handler(client)
    assert isinstance(handler, fast_s3.standard.RetryHandler), "botocore.retries.standard.RetryHandler changed"
    assert callable(handler.needs_retry), "botocore.retries.standard.RetryHandler.needs_retry changed"
    assert client.meta.config.retries["total_max_attempts"] == 4  # every attempt counted


def test_sdk_internal_azure_storage_is_retry_and_scope():
    """fast_azure uses azure.storage.blob._shared.policies.is_retry and constants.STORAGE_OAUTH_SCOPE."""
    def retried(status: int) -> bool:
        return fast_azure.is_retry(fast_azure._Response(status, {}), fast_azure.LocationMode.PRIMARY)

    assert [s for s in (200, 206, 400, 403, 404, 408, 409, 429, 500, 501, 502, 503, 504, 505) if retried(s)] \
        == [408, 500, 502, 503, 504], "azure.storage.blob._shared.policies.is_retry changed its classification"
    assert fast_azure.STORAGE_OAUTH_SCOPE == "https://storage.azure.com/.default"
    assert ExponentialRetry(**RETRY).total_retries == 3


def test_sdk_internal_requests_adapter_hooks_and_one_ssl_context(monkeypatch):
    """transport.requests_session overrides requests' HTTPAdapter.init_poolmanager / cert_verify."""
    from requests.adapters import HTTPAdapter

    assert {"init_poolmanager", "cert_verify"} <= set(vars(HTTPAdapter)), "requests' HTTPAdapter hooks changed"
    import certifi

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    transport.reset_for_tests()
    session = transport.requests_session(40)
    adapter = session.get_adapter("https://example.invalid")
    assert adapter.poolmanager.connection_pool_kw["ssl_context"] is transport.ssl_context(certifi.where())
    assert adapter.poolmanager.connection_pool_kw["maxsize"] == 40
    conn = type("Conn", (), {})()
    adapter.cert_verify(conn, "https://example.invalid", True, None)
    assert (conn.cert_reqs, conn.ca_certs) == ("CERT_REQUIRED", None)  # the context verifies, no file per connection
    assert transport.pool_manager(None, 40, 30) is transport.pool_manager(None, 40, 30)
    assert session.trust_env is bool(urllib.request.getproxies())  # no proxies: no per-request scan


def test_sdk_internal_blob_client_takes_the_shared_requests_session():
    """AzureBlobStore hands `session=` to BlobServiceClient, whose default azure-core
    RequestsTransport takes it (`_pipeline._transport.session`, private); the container
    client shares that transport."""
    from crosscloud.stores.azure import AzureBlobStore

    session = transport.requests_session(40)
    container = ContainerUrl("https://127.0.0.1:1/acct/data", "https://127.0.0.1:1/acct", "data")
    store = AzureBlobStore(container, Token(), who="the identity", session=session)
    sdk_transport = store._service._pipeline._transport  # noqa: SLF001
    assert sdk_transport.session is session, "azure-core's RequestsTransport no longer takes session="
    assert store._container._pipeline._transport._transport is sdk_transport  # noqa: SLF001
