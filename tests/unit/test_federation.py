"""federation.federated_session: one botocore session makes both the STS client and the S3 client."""

from __future__ import annotations

import datetime as dt
from typing import Any

import botocore.session
from azure.core.credentials import AccessToken
from botocore import UNSIGNED
from botocore.awsrequest import AWSResponse

from crosscloud.auth import federation
from crosscloud.auth.federation import FederationTarget, client_config, federated_session

TARGET = FederationTarget("arn:aws:iam::123456789012:role/reader", "api://tenant/crosscloud", "eu-west-1")


def answer(minutes: int) -> bytes:
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"""<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult><Credentials>
    <AccessKeyId>ASIAEXAMPLE</AccessKeyId><SecretAccessKey>secret</SecretAccessKey>
    <SessionToken>session-token</SessionToken><Expiration>{expires}</Expiration>
  </Credentials></AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>""".encode()


class FakeCredential:
    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        assert scopes == ("api://tenant/crosscloud/.default",)
        return AccessToken("entra-token", 2**31)


class RecordedStsCall:
    """A `before-send` handler: answers AssumeRoleWithWebIdentity without a network."""

    def __init__(self, minutes: int = 60) -> None:
        self.requests: list[Any] = []
        self.minutes = minutes

    def __call__(self, request: Any, **_: Any) -> AWSResponse:
        self.requests.append(request)
        return AWSResponse(request.url, 200, {}, _Raw(answer(self.minutes)))


class _Raw:
    def __init__(self, body: bytes):
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def stubbed(monkeypatch: Any, minutes: int = 60) -> tuple[RecordedStsCall, list[tuple[str, Any]]]:
    """Answer STS (credentials valid for `minutes`) on every session federation makes, and
    record each client made."""
    calls, made = RecordedStsCall(minutes), []
    real_session, real_create = federation.sts_session, botocore.session.Session.create_client

    def session_with_stub(*args: Any, **kwargs: Any) -> botocore.session.Session:
        session = real_session(*args, **kwargs)
        session.register("before-send.sts.AssumeRoleWithWebIdentity", calls)
        return session

    def recording(self: Any, service_name: str, *args: Any, **kwargs: Any) -> Any:
        client = real_create(self, service_name, *args, **kwargs)
        made.append((service_name, client.meta.config))
        return client

    monkeypatch.setattr(federation, "sts_session", session_with_stub)
    monkeypatch.setattr(botocore.session.Session, "create_client", recording)
    return calls, made


def test_the_sts_exchange_runs_unsigned_on_the_session_it_fetches_credentials_for(monkeypatch):
    sts_calls, made = stubbed(monkeypatch)
    session = federated_session(FakeCredential(), TARGET, sts_config=client_config(timeout=7, max_attempts=2))

    frozen = session.get_credentials().get_frozen_credentials()

    assert (frozen.access_key, frozen.token) == ("ASIAEXAMPLE", "session-token")
    assert len(sts_calls.requests) == 1  # answered by the handler of the session federation made
    request = sts_calls.requests[0]
    assert "Authorization" not in request.headers  # the exchange is unsigned
    assert "WebIdentityToken=entra-token" in str(request.body)
    assert [service for service, _ in made] == ["sts"]


def test_the_sts_client_is_made_once_with_the_sts_config_not_at_each_refresh(monkeypatch):
    """A botocore session is not thread-safe: refreshes (from any worker thread) make no client."""
    sts_calls, made = stubbed(monkeypatch, minutes=5)  # inside botocore's refresh window: every use refreshes
    session = federated_session(FakeCredential(), TARGET,
                                sts_config=client_config(timeout=7, max_attempts=2, connect_timeout=3))
    [(service, config)] = made
    assert service == "sts"
    assert (config.read_timeout, config.connect_timeout, config.retries["total_max_attempts"]) == (7, 3, 2)
    assert config.signature_version is UNSIGNED

    credentials = session.get_credentials()
    credentials.get_frozen_credentials()
    credentials.get_frozen_credentials()
    assert len(sts_calls.requests) == 2
    assert len(made) == 1
