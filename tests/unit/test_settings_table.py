"""Every setting, missing, empty, malformed and extreme, through every path that reads it:
the library (SettingError), the CLI (a subprocess: exit 1, one line naming the setting, no
traceback) and HTTP (500 `configuration_error` naming the setting). No row reaches a cloud:
a bad setting fails before any client makes a call.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import azure.functions as func
import pytest

from crosscloud.auth import credential_process
from crosscloud.backup.config import BackupConfig
from crosscloud.errors import SettingError
from crosscloud.settings import Settings
from crosscloud.stores import factory
from tests.unit.test_settings import GOOD

ROOT = Path(__file__).resolve().parents[2]
LONG = "x" * 10_000
HUGE = "99999999999999999999"
STORES = ("list", "backup")
FEDERATION = ("list", "backup", "credential-process")
INTS = {  # name: (below its minimum, above its maximum)
    "UPSTREAM_TIMEOUT_SECONDS": ("0", "601"), "UPSTREAM_DEADLINE_SECONDS": ("4", "201"),
    "DOWNLOAD_MAX_BYTES": ("-1", str(2**24 + 1)), "DOWNLOAD_LINK_TTL_SECONDS": ("59", "601"),
    "BACKUP_PART_SIZE_MB": ("4", "5121"), "BACKUP_CONCURRENCY": ("0", "65"),
    "BACKUP_PART_CONCURRENCY": ("0", "33"), "BACKUP_CHECKERS": ("0", "65"), "BACKUP_MEMORY_MB": ("15", "65537"),
    "BACKUP_TIME_BUDGET_SECONDS": ("0", "86401"), "BACKUP_LEASE_SECONDS": ("1", "3601"),
}
INT_PATHS = {"UPSTREAM_TIMEOUT_SECONDS": STORES, "UPSTREAM_DEADLINE_SECONDS": STORES,
             "DOWNLOAD_MAX_BYTES": ("get",), "DOWNLOAD_LINK_TTL_SECONDS": ("link",)}
URLS = ["not a url", "https://[::1/devstoreaccount1/data", "https://127.0.0.1:99999/acct/data", "ftp://a.b/c",
        "https://user:pw@a.b/c", "http://", "https://a_b.c/d", "https://" + LONG]

# (setting, value, the paths that read it): each row must fail naming the setting.
ROWS: list[tuple[str, str, tuple[str, ...]]] = [
    *[("AZURE_STORAGE_CONTAINER_URL", v, STORES) for v in ["", *URLS, "https://acct.blob.core.windows.net/data?sig=x"]],
    *[(name, "", FEDERATION) for name in ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_AUDIENCE", "AWS_REGION")],
    ("S3_BUCKET", "", STORES),
    *[("AWS_ROLE_ARN", v, FEDERATION) for v in ["crosscloud-read", "arn:aws:iam::12:role/x",
                                                "arn:aws:iam::123456789012:user/x", f"arn:aws:iam::1:role/{LONG}"]],
    *[("AWS_BACKUP_ROLE_ARN", v, ("backup",)) for v in ["crosscloud-backup", "arn:aws:iam::123456789012:role/a b"]],
    *[("AWS_WEB_IDENTITY_AUDIENCE", v, FEDERATION)
      for v in ["api://x/.default", "two words", "no-scheme", "api://" + LONG]],
    *[("AWS_REGION", v, FEDERATION) for v in ["Europe", "eu-west-1;x", LONG]],
    *[("AZURE_CLIENT_ID", v, FEDERATION) for v in ["not-a-guid", "11111111-2222-3333-4444-5555555555556"]],
    *[("S3_BUCKET", v, STORES) for v in ["Bad_Bucket", "ab", LONG]],
    *[("BACKUP_S3_BUCKET", v, ("backup",)) for v in ["Bad_Bucket", LONG]],
    *[("BACKUP_S3_PREFIX", v, ("backup",)) for v in ["/backup/", "backup", "a//b/", "../", "a/./", "x\x01/",
                                                     "p" * 600 + "/"]],
    *[("BACKUP_SOURCE_PREFIX", v, ("backup",)) for v in ["/abs", ".crosscloud/x", "a\x02", "p" * 1100]],
    *[(name, v, INT_PATHS.get(name, ("backup",))) for name, (low, high) in INTS.items()
      for v in ["lots", "-1", low, high, HUGE, "١٢", "1_000", "1e3", "0x10"]],
    *[(name, v, STORES if name != "AWS_ENDPOINT_URL_STS" else FEDERATION)
      for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_STS")
      for v in ["not a url", "ftp://a.b", "http://", "http://a.b:99999", "http://[::1", "http://a.b/?x=1"]],
    *[("IDENTITY_ENDPOINT", v, FEDERATION) for v in ["not a url", "http://[::1/msi/token"]],
    ("REQUESTS_CA_BUNDLE", "/nonexistent/ca-bundle.pem", FEDERATION),
]
KNOWN = {name for name, _, _ in ROWS} | set(GOOD) | {"BACKUP_SCHEDULE"}


def row_id(row: tuple[str, str, tuple[str, ...]]) -> str:
    name, value, _ = row
    return f"{name}={value[:24]!r}"


def through_library(path: str, env: dict[str, str], tmp: Path) -> None:
    settings = Settings(env)
    factory.reset_for_tests()
    try:
        if path == "list":
            factory.store_for("azure", settings)
            factory.store_for("s3", settings)
        elif path == "backup":
            BackupConfig.from_settings(settings)
            factory.azure_store(settings, bulk=True)
            factory.s3_store(settings, backup=True)
        elif path == "credential-process":
            credential_process.run(env={**env, credential_process.CACHE_ENV: str(tmp)})
        elif path == "get":
            _ = settings.download_max_bytes
        else:
            _ = settings.link_ttl_seconds
    finally:
        factory.reset_for_tests()


@pytest.mark.parametrize("row", ROWS, ids=row_id)
def test_the_library_names_the_setting(row, tmp_path):
    name, value, paths = row
    for path in paths:
        with pytest.raises(SettingError) as caught:
            through_library(path, {**GOOD, name: value}, tmp_path)
        assert name in caught.value.message, (path, caught.value.message)
        assert caught.value.status == 500
        assert caught.value.code == "configuration_error"
        if len(value) > 100:
            assert value not in caught.value.message  # a value is never echoed at length


CLI = {"list": ["list"], "backup": ["backup", "--dry-run"], "credential-process": ["credential-process"]}
HEADLINE = {("AZURE_STORAGE_CONTAINER_URL", "https://[::1/devstoreaccount1/data"), ("UPSTREAM_TIMEOUT_SECONDS", HUGE),
            ("AWS_ENDPOINT_URL_S3", "not a url"), ("AWS_ENDPOINT_URL_STS", "not a url"), ("AWS_ROLE_ARN", ""),
            ("BACKUP_CONCURRENCY", "١٢")}


def cli_rows() -> list[tuple[str, str, str]]:
    """A process start costs 1-3 s on a busy 2-CPU machine: each setting's first bad value
    through the first command that reads it, and the issue's cases through every command."""
    seen: set[str] = set()
    runs = []
    for name, value, paths in ROWS:
        commands = [p for p in paths if p in CLI]
        if (name, value) in HEADLINE:
            runs += [(name, value, path) for path in commands]
        elif name not in seen and commands:
            runs.append((name, value, commands[0]))
        seen.add(name)
    return runs


def test_the_cli_names_the_setting_without_a_traceback(tmp_path):
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT")}
    base.update(GOOD, PYTHONPATH=str(ROOT), CROSSCLOUD_CACHE_DIR=str(tmp_path))
    runs = cli_rows()

    def run(item: tuple[str, str, str]) -> str | None:
        name, value, path = item
        result = subprocess.run([sys.executable, "-m", "crosscloud", *CLI[path]], env={**base, name: value},
                                cwd=tmp_path, capture_output=True, text=True, timeout=120)
        err = result.stderr
        if result.returncode != 1 or "Traceback" in err or name not in err or err.count("\n") != 1 or result.stdout:
            return f"{path} {name}={value[:30]!r}: exit {result.returncode}, stderr {err[-300:]!r}"
        return None

    with ThreadPoolExecutor(4) as pool:
        failures = [f for f in pool.map(run, runs) if f]
    assert not failures, "\n".join(failures)


def _http(path: str) -> func.HttpResponse:
    from blueprints.backup import backup_now
    from blueprints.objects import get_object, list_objects

    if path == "list":
        return list_objects(func.HttpRequest("GET", "http://localhost/api/objects", params={}, body=b""))
    if path == "backup":
        return backup_now(func.HttpRequest("POST", "http://localhost/api/backup", params={"dry_run": "true"}, body=b""))
    params = {"link": "true"} if path == "link" else {}
    return get_object(func.HttpRequest("GET", "http://localhost/api/objects/s3/k", params=params, body=b"",
                                       route_params={"source": "s3", "key": "k"}))


@pytest.mark.parametrize("row", ROWS, ids=row_id)
def test_http_answers_configuration_error_naming_the_setting(row, monkeypatch):
    name, value, paths = row
    for known in KNOWN | {"AWS_ENDPOINT_URL", "IDENTITY_ENDPOINT", "REQUESTS_CA_BUNDLE"}:
        monkeypatch.delenv(known, raising=False)
    for key, good in GOOD.items():
        monkeypatch.setenv(key, good)
    monkeypatch.setenv(name, value)
    for path in (p for p in paths if p != "credential-process"):
        factory.reset_for_tests()
        response = _http(path)
        error = json.loads(response.get_body())["error"]
        assert response.status_code == 500, (path, error)
        assert error["code"] == "configuration_error", (path, error)
        assert name in error["message"]
        assert "Retry-After" not in response.headers
    factory.reset_for_tests()


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("BACKUP_S3_PREFIX", "", "backup/"), ("BACKUP_S3_PREFIX", "  ", "backup/"), ("BACKUP_S3_PREFIX", "b/c/", "b/c/"),
    ("UPSTREAM_TIMEOUT_SECONDS", " 600 ", 600), ("UPSTREAM_DEADLINE_SECONDS", "200", 200),
    ("DOWNLOAD_LINK_TTL_SECONDS", "", 300), ("DOWNLOAD_MAX_BYTES", str(2**24), 2**24), ("DOWNLOAD_MAX_BYTES", "0", 0),
])
def test_empty_means_the_default_and_bounds_are_inclusive(name, value, expected):
    attr = {"BACKUP_S3_PREFIX": "backup_prefix", "UPSTREAM_TIMEOUT_SECONDS": "upstream_timeout_s",
            "UPSTREAM_DEADLINE_SECONDS": "upstream_deadline_s", "DOWNLOAD_LINK_TTL_SECONDS": "link_ttl_seconds",
            "DOWNLOAD_MAX_BYTES": "download_max_bytes"}[name]
    assert getattr(Settings({name: value}), attr) == expected


def test_an_unset_backup_role_is_named_when_the_read_role_is_refused():
    from botocore.exceptions import ClientError

    from crosscloud.errors import UpstreamError
    from crosscloud.stores.s3 import s3_errors

    settings = Settings(GOOD)
    assert settings.aws_backup_role_arn == GOOD["AWS_ROLE_ARN"]
    source = settings.backup_role_source
    with pytest.raises(UpstreamError) as caught, s3_errors("write", "b", settings.aws_backup_role_arn, "k", source):
        raise ClientError({"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "PutObject")
    assert "AWS_BACKUP_ROLE_ARN is unset" in caught.value.message
    assert "AWS_ROLE_ARN" in caught.value.message
