"""federation.federated_session: one botocore session makes both the STS client and the S3 client."""

from __future__ import annotations

import datetime as dt
from typing import Any

from azure.core.credentials import AccessToken
from botocore import UNSIGNED
from botocore.awsrequest import AWSResponse

from crosscloud.auth.federation import FederationTarget, client_config, federated_session

TARGET = FederationTarget("arn:aws:iam::123456789012:role/reader", "api://tenant/crosscloud", "eu-west-1")
EXPIRES = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
ANSWER = f"""<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult><Credentials>
    <AccessKeyId>ASIAEXAMPLE</AccessKeyId><SecretAccessKey>secret</SecretAccessKey>
    <SessionToken>session-token</SessionToken><Expiration>{EXPIRES}</Expiration>
  </Credentials></AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>""".encode()


class FakeCredential:
    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        assert scopes == ("api://tenant/crosscloud/.default",)
        return AccessToken("entra-token", 2**31)


class RecordedStsCall:
    """A `before-send` handler: answers AssumeRoleWithWebIdentity without a network."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    def __call__(self, request: Any, **_: Any) -> AWSResponse:
        self.requests.append(request)
        return AWSResponse(request.url, 200, {}, _Raw(ANSWER))


class _Raw:
    def __init__(self, body: bytes):
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def test_the_sts_exchange_runs_unsigned_on_the_session_it_fetches_credentials_for():
    sts_config = client_config(timeout=7, max_attempts=2, connect_timeout=3)
    session = federated_session(FakeCredential(), TARGET, sts_config=sts_config)
    sts_calls = RecordedStsCall()
    # Registered on this session only: it answers only if the STS client is made by this session
    # (one data loader: the service list, endpoints and models are read once per process).
    session.register("before-send.sts.AssumeRoleWithWebIdentity", sts_calls)
    created: list[Any] = []
    session.register("creating-client-class.sts", lambda **kw: created.append(kw))

    frozen = session.get_credentials().get_frozen_credentials()

    assert (frozen.access_key, frozen.token) == ("ASIAEXAMPLE", "session-token")
    assert len(sts_calls.requests) == 1
    request = sts_calls.requests[0]
    assert "Authorization" not in request.headers  # the exchange is unsigned
    assert "WebIdentityToken=entra-token" in str(request.body)
    assert created, "the STS client was not created by the federated session"


def test_the_sts_config_is_merged_under_the_fetchers_unsigned_config(monkeypatch):
    sts_config = client_config(timeout=7, max_attempts=2, connect_timeout=3)
    session = federated_session(FakeCredential(), TARGET, sts_config=sts_config)
    session.register("before-send.sts.AssumeRoleWithWebIdentity", RecordedStsCall())
    configs: list[Any] = []
    real = session.create_client

    def recording(service_name: str, *args: Any, **kwargs: Any) -> Any:
        client = real(service_name, *args, **kwargs)
        configs.append((service_name, client.meta.config))
        return client

    monkeypatch.setattr(session, "create_client", recording)
    session.get_credentials().get_frozen_credentials()
    [(service, config)] = configs
    assert service == "sts"
    assert (config.read_timeout, config.connect_timeout, config.retries["total_max_attempts"]) == (7, 3, 2)
    assert config.signature_version is UNSIGNED
