"""credential-process caching without a cloud: a fake Azure credential and a fake STS client."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from botocore.exceptions import ClientError

from crosscloud.auth import credential_process as cp
from crosscloud.auth.federation import FederationTarget
from crosscloud.errors import FederationError
from tests.unit import recorded

TARGET = FederationTarget("arn:aws:iam::123456789012:role/crosscloud-read", recorded.AUDIENCE, "eu-west-1")


class FakeCredential:
    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken(recorded.fake_jwt(aud=recorded.AUDIENCE), 2_000_000_000)


class FakeSts:
    """Stands in for botocore's STS client; `lifetime` sets how long issued credentials live."""

    def __init__(self, lifetime: dt.timedelta = dt.timedelta(hours=1), error: str | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.lifetime = lifetime
        self.error = error

    def create_client(self, service: str, **kwargs: Any) -> FakeSts:
        assert service == "sts"
        return self

    def assume_role_with_web_identity(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if self.error:
            raise ClientError({"Error": {"Code": self.error, "Message": "Not authorized to perform "
                                         "sts:AssumeRoleWithWebIdentity"}}, "AssumeRoleWithWebIdentity")
        n = len(self.calls)
        return {"Credentials": {"AccessKeyId": f"ASIAFAKE{n:012d}", "SecretAccessKey": f"secret-{n}",
                                "SessionToken": f"session-{n}",
                                "Expiration": dt.datetime.now(dt.UTC) + self.lifetime},
                "AssumedRoleUser": {"Arn": "arn:aws:sts::123456789012:assumed-role/crosscloud-read/x"}}


def fetch(sts: FakeSts, cache_dir: Path, *, identity_key: str = "client:abc", target: FederationTarget = TARGET,
          env: dict[str, str] | None = None) -> dict[str, Any]:
    return cp.fetch(FakeCredential(), target, identity_key=identity_key, cache=cp.PrivateFileCache(cache_dir),
                    env=env or {}, client_creator=sts.create_client)


def entries(cache: Path) -> list[Path]:
    """The cached credential documents (the lock files beside them are not entries)."""
    return sorted(cache.glob("*.json"))


def test_output_is_the_credential_process_protocol(tmp_path):
    doc = fetch(FakeSts(), tmp_path / "cache")
    assert set(doc) == {"Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}
    assert doc["Version"] == 1
    assert doc["AccessKeyId"] == "ASIAFAKE000000000001"
    expires = dt.datetime.strptime(doc["Expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    assert dt.timedelta(minutes=55) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(hours=1)


def test_cached_until_near_expiry_in_a_private_directory(tmp_path):
    sts, cache = FakeSts(), tmp_path / "cache"
    first = fetch(sts, cache)
    second = fetch(sts, cache)
    assert len(sts.calls) == 1
    assert second == first
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    files = entries(cache)
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert files[0].name.startswith("crosscloud-")


def test_credentials_inside_the_expiry_window_are_refreshed(tmp_path):
    sts, cache = FakeSts(lifetime=dt.timedelta(minutes=10)), tmp_path / "cache"  # < botocore's 15 min window
    fetch(sts, cache)
    fetch(sts, cache)
    assert len(sts.calls) == 2


@pytest.mark.parametrize("change", ["identity", "audience", "role", "sts_endpoint"])
def test_cache_key_separates_identity_audience_role_and_endpoint(tmp_path, change):
    sts, cache = FakeSts(), tmp_path / "cache"
    fetch(sts, cache)
    kwargs: dict[str, Any] = {}
    if change == "identity":
        kwargs["identity_key"] = cp.SYSTEM
    elif change == "audience":
        kwargs["target"] = FederationTarget(TARGET.role_arn, "api://other", TARGET.region)
    elif change == "role":
        kwargs["target"] = FederationTarget("arn:aws:iam::123456789012:role/other", TARGET.audience, TARGET.region)
    else:
        kwargs["env"] = {"AWS_ENDPOINT_URL_STS": "http://127.0.0.1:4566"}
    other = fetch(sts, cache, **kwargs)
    assert len(sts.calls) == 2
    assert other["AccessKeyId"] == "ASIAFAKE000000000002"
    assert len(entries(cache)) == 2


def test_corrupt_cache_entry_is_a_miss(tmp_path):
    sts, cache = FakeSts(), tmp_path / "cache"
    fetch(sts, cache)
    (entry,) = entries(cache)
    entry.write_text("{not json")
    assert fetch(sts, cache)["AccessKeyId"] == "ASIAFAKE000000000002"
    assert json.loads(entry.read_text())["Credentials"]["AccessKeyId"] == "ASIAFAKE000000000002"


def test_sts_refusal_is_explained_and_nothing_cached(tmp_path):
    sts, cache = FakeSts(error="AccessDenied"), tmp_path / "cache"
    with pytest.raises(FederationError, match="AccessDenied") as caught:
        fetch(sts, cache)
    assert TARGET.role_arn in caught.value.message
    assert entries(cache) == []


def test_token_is_requested_for_the_audience(tmp_path):
    credential, sts = FakeCredential(), FakeSts()
    cp.fetch(credential, TARGET, identity_key="system", cache=cp.PrivateFileCache(tmp_path / "c"), env={},
             client_creator=sts.create_client)
    assert credential.scopes == [f"{recorded.AUDIENCE}/.default"]
    assert sts.calls[0]["RoleArn"] == TARGET.role_arn
    assert sts.calls[0]["RoleSessionName"].startswith("crosscloud-")


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cp.cache_dir({}) == tmp_path / "home" / ".cache" / "crosscloud" / "credential-process"
    assert cp.cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/crosscloud/credential-process")
    assert cp.cache_dir({"XDG_CACHE_HOME": "/x", cp.CACHE_ENV: "/y"}) == Path(f"/y/crosscloud-{os.getuid()}")


def test_existing_loose_directory_is_tightened(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)  # noqa: S103 - the loose mode under test
    cp.private_dir(loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700


def test_directory_of_another_user_is_refused(tmp_path, monkeypatch):
    someone_else = os.getuid() + 1
    monkeypatch.setattr(cp.os, "getuid", lambda: someone_else)
    with pytest.raises(cp.CacheError, match="belongs to another user"):
        cp.private_dir(tmp_path)


def test_flags_are_named_in_errors(monkeypatch, capsys):
    from crosscloud import cli

    monkeypatch.setenv(cp.CACHE_ENV, "/nonexistent-never-created")
    assert cli.main(["credential-process", "--role-arn", "arn:aws:iam::1:role/x", "--audience", "api://a",
                     "--region", "eu-west-1"]) == 1
    out, err = capsys.readouterr()
    assert out == ""  # nothing on stdout unless it is the protocol document
    assert err.count("\n") == 1
    assert "--role-arn is malformed" in err
    assert not Path("/nonexistent-never-created").exists()  # bad input changes nothing


class SlowSts(FakeSts):
    """An STS that takes a while to answer, so concurrent fetches overlap."""

    def assume_role_with_web_identity(self, **kwargs: Any) -> dict[str, Any]:
        time.sleep(0.3)
        return super().assume_role_with_web_identity(**kwargs)


def test_concurrent_cold_fetches_make_one_sts_call(tmp_path):
    """Eight fetches of one entry at once (each with its own cache object and lock file
    descriptor, as separate processes have): one STS call, the same credentials for all."""
    sts, cache = SlowSts(), tmp_path / "cache"
    with ThreadPoolExecutor(8) as pool:
        docs = list(pool.map(lambda _: fetch(sts, cache), range(8)))
    assert len(sts.calls) == 1
    assert all(d == docs[0] for d in docs)


def test_an_entry_locked_too_long_is_a_clear_error(tmp_path):
    cache = cp.PrivateFileCache(tmp_path / "c")
    with cache.lock("k"), pytest.raises(cp.CacheError, match="stayed locked"), cache.lock("k", wait_s=0.1):
        pass


def test_a_shared_cache_dir_is_not_chmodded_and_holds_a_private_subdirectory(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # noqa: S103 - a /tmp-like directory is the case under test
    cache = cp.open_cache({cp.CACHE_ENV: str(shared)})
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert cache.directory == shared / f"crosscloud-{os.getuid()}"
    info = cache.directory.stat()
    assert stat.S_IMODE(info.st_mode) == 0o700
    assert info.st_uid == os.getuid()


def test_a_private_subdirectory_of_another_user_is_refused_naming_the_setting(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    someone_else = os.getuid() + 1
    (shared / f"crosscloud-{someone_else}").mkdir(mode=0o700)  # "theirs": created before we look
    monkeypatch.setattr(cp.os, "getuid", lambda: someone_else)
    with pytest.raises(cp.CacheError, match=f"belongs to another user.*{cp.CACHE_ENV}"):
        cp.open_cache({cp.CACHE_ENV: str(shared)})


def test_a_symlinked_private_subdirectory_is_refused(tmp_path):
    shared, elsewhere = tmp_path / "shared", tmp_path / "elsewhere"
    shared.mkdir()
    elsewhere.mkdir()
    (shared / f"crosscloud-{os.getuid()}").symlink_to(elsewhere)
    with pytest.raises(cp.CacheError, match="not a plain directory"):
        cp.open_cache({cp.CACHE_ENV: str(shared)})


def test_a_shared_dir_without_the_sticky_bit_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # noqa: S103 - anyone could swap our subdirectory
    with pytest.raises(cp.CacheError, match=f"{cp.CACHE_ENV}.*sticky"):
        cp.open_cache({cp.CACHE_ENV: str(shared)})
    assert stat.S_IMODE(shared.stat().st_mode) == 0o777


@pytest.mark.parametrize("where", ["a-file", "a-file/below"])
def test_a_cache_dir_that_cannot_be_a_directory_is_a_clear_error(tmp_path, where, monkeypatch, capsys):
    from crosscloud import cli

    (tmp_path / "a-file").write_text("not a directory")
    with pytest.raises(cp.CacheError, match=cp.CACHE_ENV):
        cp.open_cache({cp.CACHE_ENV: str(tmp_path / where)})
    monkeypatch.setenv(cp.CACHE_ENV, str(tmp_path / where))
    for name, value in {"AWS_ROLE_ARN": TARGET.role_arn, "AWS_WEB_IDENTITY_AUDIENCE": TARGET.audience,
                        "AWS_REGION": TARGET.region}.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["credential-process", "--system-assigned"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert cp.CACHE_ENV in err
