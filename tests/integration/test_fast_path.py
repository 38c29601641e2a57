"""The small-object fast path against the local cloud: what it sends, and faults, on both paths.

Faults come from a loopback proxy in front of Azurite or moto (`faultproxy.py`): throttling
(503 SlowDown, 429, 503 ServerBusy with Retry-After), 5xx, connection resets. Each fault
test runs with the fast path on and off and expects the same outcome; credentials and
tokens are expired mid-run to show the fast path asks botocore / azure-identity each time.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import urllib3

from crosscloud import backup
from crosscloud.backup.config import BackupConfig
from crosscloud.backup.run import Backup
from crosscloud.errors import NotFound, PreconditionFailed, UpstreamError
from crosscloud.settings import Settings
from crosscloud.stores import factory, fast_azure, fast_s3
from crosscloud.stores.base import PutOptions
from tests.integration.faultproxy import FaultProxy, first

pytestmark = pytest.mark.integration
MIB = 1024 * 1024
SLOWDOWN = (503, {"Content-Type": "application/xml"},
            b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
            b"<Message>Please reduce your request rate.</Message></Error>")
TOO_MANY = (429, {}, b"")
INTERNAL = (500, {"Content-Type": "application/xml"},
            b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>InternalError</Code>"
            b"<Message>We encountered an internal error.</Message></Error>")
SERVER_BUSY = (503, {"Retry-After": "1", "x-ms-error-code": "ServerBusy", "Content-Type": "application/xml"},
               b"<?xml version='1.0' encoding='utf-8'?><Error><Code>ServerBusy</Code>"
               b"<Message>The server is busy.</Message></Error>")


@pytest.fixture(params=["fast", "sdk"])
def mode(request, env, monkeypatch, prefix) -> str:
    monkeypatch.setenv("BACKUP_FAST_PATH_MB", "8" if request.param == "fast" else "0")
    monkeypatch.setenv("BACKUP_SOURCE_PREFIX", prefix)
    monkeypatch.setenv("BACKUP_S3_PREFIX", f"{env['BACKUP_S3_PREFIX']}{prefix}")
    monkeypatch.setenv("BACKUP_PART_SIZE_MB", "5")
    return request.param


def engine(**changes: Any) -> Backup:
    settings = Settings()
    config = replace(BackupConfig.from_settings(settings), **changes)
    return Backup(factory.azure_store(settings), factory.s3_store(settings, backup=True), config)


def seed(azure_admin: Any, prefix: str, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        azure_admin.upload_blob(prefix + name, data, overwrite=True)


def copy_of(aws_admin: Any, env: dict[str, str], prefix: str, name: str) -> dict[str, Any]:
    return aws_admin.get_object(Bucket=env["BACKUP_S3_BUCKET"], Key=f"{env['BACKUP_S3_PREFIX']}{prefix}{prefix}{name}",
                                ChecksumMode="ENABLED")


def counting(monkeypatch: Any, target: Any, method: str) -> list[Any]:
    results: list[Any] = []
    real = getattr(target, method)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        results.append(result)
        return result

    monkeypatch.setattr(target, method, wrapper)
    return results


def s3_proxy(env: dict[str, str], monkeypatch: Any, plan: Any) -> FaultProxy:
    proxy = FaultProxy(env["AWS_ENDPOINT_URL_S3"], plan)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)  # STS stays direct (AWS_ENDPOINT_URL_STS)
    return proxy


def azure_proxy(env: dict[str, str], monkeypatch: Any, plan: Any) -> FaultProxy:
    tls = Path(env["REQUESTS_CA_BUNDLE"]).parent
    proxy = FaultProxy(env["AZURE_STORAGE_CONTAINER_URL"], plan, cert=(str(tls / "server.pem"),
                       str(tls / "server-key.pem")), ca_file=env["REQUESTS_CA_BUNDLE"])
    path = env["AZURE_STORAGE_CONTAINER_URL"].split("/", 3)[3]
    monkeypatch.setenv("AZURE_STORAGE_CONTAINER_URL", f"{proxy.url}/{path}")
    return proxy


def test_small_objects_take_the_lean_paths_large_ones_the_sdk(mode, env, monkeypatch, prefix, azure_admin,
                                                               aws_admin):
    from azure.storage.blob import ContentSettings

    files = {"a.txt": b"alpha", "empty": b"", "big.bin": os.urandom(5 * MIB + 7)}  # 5 MiB parts: big is multipart
    seed(azure_admin, prefix, files)
    azure_admin.upload_blob(prefix + "typed.csv", b"a,b\n", overwrite=True, metadata={"Owner": "team-a"},
                            content_settings=ContentSettings(content_type="text/csv"))
    reads = counting(monkeypatch, fast_azure.FastBlobReader, "open")
    puts = counting(monkeypatch, fast_s3.FastPutter, "put")
    report = backup.run_configured()
    assert (report.copied, report.failed_count) == (4, 0)
    lean = 3 if mode == "fast" else 0
    assert (len([r for r in reads if r is not None]), len(puts)) == (lean, lean)
    for name in (*files, "typed.csv"):
        source_bytes = azure_admin.download_blob(prefix + name).readall()
        assert copy_of(aws_admin, env, prefix, name)["Body"].read() == source_bytes, name
    typed = copy_of(aws_admin, env, prefix, "typed.csv")
    assert (typed["ContentType"], typed["Metadata"]["owner"]) == ("text/csv", "team-a")
    if mode == "fast":  # stored and reported by the destination, compared by the copier
        assert typed["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(b"a,b\n").digest()).decode()
    assert "crosscloud-source-etag" in typed["Metadata"]


def test_errors_carry_the_same_codes_on_both_paths(env, monkeypatch, prefix, azure_admin):
    source, dest = factory.azure_store(), factory.s3_store(backup=True)
    with pytest.raises(NotFound):
        source.open(prefix + "missing")
    with pytest.raises(NotFound):
        source.open_small(prefix + "missing", MIB)
    azure_admin.upload_blob(prefix + "big", b"x" * 100)
    assert source.open_small(prefix + "big", 99) is None  # larger than the limit: the SDK path reads it
    options = PutOptions(lean=True)
    for lean in (True, False):
        with pytest.raises(UpstreamError) as denied:
            dest.put(f"elsewhere/{prefix}x", _Body(b"x"), 1, replace(options, lean=lean))
        assert denied.value.code == "s3_forbidden"
        key = f"{env['BACKUP_S3_PREFIX']}{prefix}cond-{lean}"
        dest.put(key, _Body(b"1"), 1, replace(options, lean=lean, if_none_match=True))
        with pytest.raises(PreconditionFailed):
            dest.put(key, _Body(b"2"), 1, replace(options, lean=lean, if_none_match=True))
    factory.reset_for_tests()
    monkeypatch.setenv("AZURE_STORAGE_CONTAINER_URL", env["AZURE_STORAGE_CONTAINER_URL"].rsplit("/", 1)[0] + "/absent")
    missing = factory.azure_store()
    for read in (lambda: missing.open("x"), lambda: missing.open_small("x", MIB)):
        with pytest.raises(UpstreamError) as absent:
            read()
        assert absent.value.code == "azure_container_not_found"


class _Body:
    def __init__(self, data: bytes):
        self.data = data

    def read(self, size: int = -1) -> bytes:
        data, self.data = self.data, b""
        return data


@pytest.mark.parametrize("fault", [SLOWDOWN, TOO_MANY], ids=["503-SlowDown", "429"])
def test_s3_throttling_is_retried_within_the_request(mode, env, monkeypatch, prefix, azure_admin, fault):
    seed(azure_admin, prefix, {"a.txt": b"alpha", "b.txt": b"beta"})
    with s3_proxy(env, monkeypatch, first(2, fault, "PUT", "a.txt")) as proxy:
        report = engine(retry_base_s=30).run()  # an object-level retry would take 15 s or more
    assert (report.copied, report.failed_count) == (2, 0)
    statuses = [status for method, path, status, _ in proxy.seen if method == "PUT" and path.endswith("a.txt")]
    assert statuses == [fault[0], fault[0], 200]


def test_persistent_s3_5xx_uses_the_same_attempts_and_fails_with_the_same_reason(mode, env, monkeypatch, prefix,
                                                                                 azure_admin):
    seed(azure_admin, prefix, {"a.txt": b"alpha", "b.txt": b"beta"})
    with s3_proxy(env, monkeypatch, first(100, INTERNAL, "PUT", "a.txt")) as proxy:
        report = engine(retry_base_s=0.05).run()
    assert report.copied == 1
    assert [(f.key, f.reason) for f in report.failed] == [(prefix + "a.txt", "S3 write failed: InternalError")]
    puts = [s for m, p, s, _ in proxy.seen if m == "PUT" and p.endswith("a.txt")]
    attempts = factory.s3_store(backup=True).client.meta.config.retries["total_max_attempts"]
    assert attempts == 4  # the bulk budget: four attempts in all (stores/factory.py Budget)
    assert puts == [500] * attempts * 3  # per request (botocore's limit) x object-level attempts, both paths


def test_azure_server_busy_is_retried_honouring_retry_after(mode, env, monkeypatch, prefix, azure_admin):
    seed(azure_admin, prefix, {"a.txt": b"alpha"})
    with azure_proxy(env, monkeypatch, first(1, SERVER_BUSY, "GET", "a.txt")) as proxy:
        report = engine(retry_base_s=30).run()
    assert (report.copied, report.failed_count) == (1, 0)
    gets = [(s, t) for m, p, s, t in proxy.seen if m == "GET" and p.endswith("a.txt")]
    assert [s for s, _ in gets] == [503, 200 if mode == "fast" else 206]  # the SDK asks for a range
    if mode == "fast":  # the storage SDK's own policy ignores Retry-After; the fast path waits for it
        assert gets[1][1] - gets[0][1] >= 1.0


@pytest.mark.parametrize("side", ["azure", "s3"])
def test_a_connection_reset_is_retried_within_the_request(mode, side, env, monkeypatch, prefix, azure_admin):
    seed(azure_admin, prefix, {"a.txt": b"alpha"})
    make, method = (azure_proxy, "GET") if side == "azure" else (s3_proxy, "PUT")
    with make(env, monkeypatch, first(1, "reset", method, "a.txt")) as proxy:
        report = engine(retry_base_s=30).run()
    assert (report.copied, report.failed_count) == (1, 0)
    answered = 206 if (side, mode) == ("azure", "sdk") else 200  # the SDK's GET asks for a range
    assert [s for m, p, s, _ in proxy.seen if m == method and p.endswith("a.txt")] == ["reset", answered]


def test_expired_aws_credentials_mid_run_are_refreshed_by_botocore(mode, env, monkeypatch, prefix, azure_admin):
    seed(azure_admin, prefix, {f"{i}.txt": b"x" * i for i in range(4)})
    store = factory.s3_store(backup=True)
    credentials = store.client._request_signer._credentials  # noqa: SLF001 - the session's refresher
    first_run = engine().run()
    assert first_run.copied == 4
    refreshes = counting(monkeypatch, credentials, "_refresh_using")  # botocore's fetch (the STS exchange)
    credentials._expiry_time = credentials._expiry_time.replace(year=2000)  # noqa: SLF001 - expire them now
    seed(azure_admin, prefix, {f"{i}.txt": b"y" * i for i in range(1, 4)})
    second = engine().run()
    assert (second.copied, second.failed_count) == (3, 0)
    assert len(refreshes) == 1  # one refresh under botocore's lock, shared by the lean and the SDK path
    assert credentials._expiry_time.year > 2000  # noqa: SLF001


def test_an_expiring_azure_token_is_asked_for_again_not_kept(env, monkeypatch, prefix, azure_admin):
    """The fast path asks the credential for every request, so a token that expired mid-run is
    never sent: azure-identity's cache (here: a credential minting 3-second tokens) decides."""
    import jwt  # noqa: F401 - devstack's minting needs it
    from azure.core.credentials import AccessToken
    from cryptography.hazmat.primitives import serialization

    from devstack import config
    from devstack.identity_server import mint_token

    key = serialization.load_pem_private_key(Path(env["DEVSTACK_ISSUER_KEY"]).read_bytes(), password=None)
    issued: list[str] = []

    class ShortLived:
        def get_token(self, *scopes: str, **_: Any) -> AccessToken:
            now = time.time()
            if not issued or now >= expires[0] - 1:
                issued.append(mint_token(key, config.APP_IDENTITY, "https://storage.azure.com", ttl=3))
                expires[0] = now + 3
            return AccessToken(issued[-1], int(expires[0]))

    expires = [0.0]
    monkeypatch.setenv("BACKUP_FAST_PATH_MB", "8")
    reader = factory.azure_store().fast_reader
    monkeypatch.setattr(reader, "_credential", ShortLived())
    seed(azure_admin, prefix, {"a.txt": b"alpha", "b.txt": b"beta"})
    assert reader.open(prefix + "a.txt", MIB) is not None
    time.sleep(3.5)
    stale = urllib3.PoolManager(ca_certs=env["REQUESTS_CA_BUNDLE"]).request(
        "GET", f"{env['AZURE_STORAGE_CONTAINER_URL']}/{prefix}b.txt",
        headers={"Authorization": f"Bearer {issued[0]}", "x-ms-version": reader._api_version})
    assert stale.status in (401, 403)  # the expired token is refused (Azure: 401, Azurite: 403)
    assert b"".join(reader.open(prefix + "b.txt", MIB).iter_chunks()) == b"beta"
    assert len(issued) == 2
