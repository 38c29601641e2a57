"""Azure managed identity -> AWS credentials, with botocore's own refresh machinery.

The shared module: usable on its own with any azure-identity credential. It is liftable: copy
this one file (and `crosscloud/errors.py`) into another project; it needs only boto3, botocore
and azure-core.

    from azure.identity import ManagedIdentityCredential
    from crosscloud.auth.federation import boto3_session

    session = boto3_session(ManagedIdentityCredential(),
                            role_arn="arn:aws:iam::123456789012:role/reader",
                            audience="api://<tenant-id>/crosscloud", region="eu-west-1")
    session.client("s3").list_buckets()

How the pieces split, as in botocore's `credentials.py`:
- `AzureWebIdentityTokenLoader` knows *how to get the token*: asks the Azure credential
  for a token for the audience on every exchange (azure-identity caches and refreshes it).
- botocore's `AssumeRoleWithWebIdentityCredentialFetcher` knows *how to exchange it*
  (unsigned STS call, honouring `AWS_ENDPOINT_URL_STS` and the region).
- botocore's `DeferredRefreshableCredentials` knows *when to refresh*: lazily on first
  use, ahead of expiry (advisory 15 min, mandatory 10 min), under its own lock, so many
  threads cause one STS call per credential lifetime.
- `FederatedCredentialProvider` plugs that into a botocore session as its *only*
  credential source, so ambient AWS keys are never picked up by accident.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.session
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError
from botocore import UNSIGNED
from botocore.config import Config
from botocore.credentials import (
    AssumeRoleWithWebIdentityCredentialFetcher,
    CredentialProvider,
    CredentialResolver,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import BotoCoreError, ClientError

from crosscloud.errors import CrossCloudError, FederationError, IdentityError, UpstreamError

SESSION_NAME_CHARS = re.compile(r"[^\w+=,.@-]")


def role_session_name(hint: str | None = None) -> str:
    """A valid RoleSessionName (2-64 of `[\\w+=,.@-]`) that says who called, for CloudTrail."""
    base = hint or os.environ.get("WEBSITE_SITE_NAME") or socket.gethostname() or "host"
    name = "crosscloud-" + SESSION_NAME_CHARS.sub("-", base)
    return name[:64]


class AzureWebIdentityTokenLoader:
    """Callable returning a token for `audience` from an azure-identity credential.

    Called by the fetcher for every exchange, so each STS call gets a token that is valid
    at that moment; azure-identity decides when its cached token must be renewed.
    """

    def __init__(self, credential: TokenCredential, audience: str, who: str = "the managed identity"):
        self._credential = credential
        self._audience = audience
        self._who = who

    def __call__(self) -> str:
        # For a managed identity the scope is the resource (App ID URI) plus `/.default`.
        scope = self._audience if self._audience.endswith("/.default") else self._audience.rstrip("/") + "/.default"
        try:
            return self._credential.get_token(scope).token
        except CrossCloudError:
            raise  # already explained (the app passes a credential that names its failures)
        except AzureError as exc:  # a lifted module with a plain azure-identity credential
            raise IdentityError(f"{self._who} could not get a token for {self._audience} "
                                f"({type(exc).__name__})") from None


def explain_sts_error(code: str, message: str, role_arn: str, audience: str) -> tuple[str, bool]:
    """A cause-and-fix sentence for an STS refusal, and whether a retry can help."""
    low = message.lower()
    if code == "InvalidIdentityToken" and "no openidconnect provider" in low:
        return (f"AWS has no IAM OIDC provider for the token's issuer ({message.split(' for ')[-1]}); "
                "create one for that issuer URL with the audience in its client ID list", False)
    if code == "InvalidIdentityToken" and "audience" in low:
        return (f"the token's audience {audience!r} (AWS_WEB_IDENTITY_AUDIENCE) is not in the IAM "
                "OIDC provider's client ID list", False)
    if code == "IDPCommunicationError" or "verification key" in low:
        return ("AWS could not fetch the issuer's signing keys (OIDC discovery / JWKS); "
                "retry, and check the issuer URL of the OIDC provider", True)
    if code == "ExpiredTokenException":
        return "the Entra token had expired when STS checked it; check the host clock and retry", True
    if code == "AccessDenied":
        return (f"not allowed to assume {role_arn}: the role is missing, or its trust "
                "policy's Federated principal or its aud/sub conditions do not admit this identity "
                "(run `python -m crosscloud doctor`)", False)
    if code in ("Throttling", "ThrottlingException", "RequestLimitExceeded", "ServiceUnavailable"):
        return "STS is throttling or unavailable; retry", True
    return f"{code}: {message}", False


class FederatedCredentialProvider(CredentialProvider):
    """A botocore credential provider whose credentials come from the web-identity exchange."""

    METHOD = "crosscloud-azure-web-identity"
    CANONICAL_NAME = "crosscloud-azure-web-identity"

    def __init__(self, credentials: DeferredRefreshableCredentials):
        super().__init__()
        self._credentials = credentials

    def load(self) -> DeferredRefreshableCredentials:
        return self._credentials


@dataclass(frozen=True)
class FederationTarget:
    role_arn: str
    audience: str
    region: str


def refreshable_credentials(
    credential: TokenCredential,
    target: FederationTarget,
    *,
    session_name: str | None = None,
    cache: Any = None,
    fetcher_cls: type[AssumeRoleWithWebIdentityCredentialFetcher] = AssumeRoleWithWebIdentityCredentialFetcher,
    who: str = "the managed identity",
    sts_config: Config | None = None,
    client_creator: Callable[..., Any] | None = None,
) -> DeferredRefreshableCredentials:
    """Refreshable AWS credentials for `target`, obtained with `credential`'s Entra token.

    The STS client comes from `client_creator` (by default a plain session of its own);
    `sts_config` (timeouts, retries) is merged under the unsigned config the fetcher asks for.
    """
    if client_creator is None:
        client_creator = sts_client_creator(sts_session(target.region), sts_config)
    fetcher = fetcher_cls(
        client_creator=client_creator,
        web_identity_token_loader=AzureWebIdentityTokenLoader(credential, target.audience, who),
        role_arn=target.role_arn,
        extra_args={"RoleSessionName": role_session_name(session_name)},
        cache=cache,
    )
    return DeferredRefreshableCredentials(
        refresh_using=explaining(fetcher.fetch_credentials, target),
        method=FederatedCredentialProvider.METHOD,
    )


def sts_session(region: str, sts_config: Config | None = None) -> botocore.session.Session:
    """A plain botocore session for the STS exchange, with `sts_config` as every client's default."""
    base = botocore.session.Session()
    base.set_config_variable("region", region)
    if sts_config is not None:
        base.set_default_client_config(sts_config)
    return base


def sts_client_creator(session: botocore.session.Session, sts_config: Config | None) -> Callable[..., Any]:
    """`session.create_client` with `sts_config` under the fetcher's own (unsigned) config, as a
    session's default client config would be merged."""
    if sts_config is None:
        return session.create_client

    def create_client(service_name: str, config: Config | None = None, **kwargs: Any) -> Any:
        return session.create_client(service_name, config=sts_config.merge(config) if config else sts_config,
                                     **kwargs)

    return create_client


def explaining(fetch: Callable[[], dict[str, Any]], target: FederationTarget) -> Callable[[], dict[str, Any]]:
    """Wrap the fetch so an STS refusal surfaces as a FederationError with cause and fix."""

    def fetch_credentials() -> dict[str, Any]:
        try:
            return fetch()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", "Unknown"), error.get("Message", "")
            explanation, retryable = explain_sts_error(code, message, target.role_arn, target.audience)
            raise FederationError(
                f"AWS STS refused AssumeRoleWithWebIdentity ({code}): {explanation}",
                code=f"sts_{code[0].lower()}{code[1:]}" if code else "sts_error",
                status=503 if retryable else 502,
                retry_after=10 if retryable else None,
            ) from None
        except BotoCoreError as exc:
            raise UpstreamError(f"AWS STS could not be reached: {type(exc).__name__}",
                                code="sts_unreachable", status=503, retry_after=5) from None

    return fetch_credentials


def federated_session(credential: TokenCredential, target: FederationTarget, *, session_name: str | None = None,
                      sts_config: Config | None = None) -> botocore.session.Session:
    """A botocore session whose *only* credential source is the exchange for `target`.

    The STS client is made by this same session, as botocore's own web-identity provider
    does: one data loader, so the service list, endpoints and models are read once, not twice
    (about 50 ms of CPU at start-up). It is made here, once, after the provider is registered
    (so making it never looks for other credentials), not at each refresh from whichever
    thread refreshes: a botocore session is not thread-safe. Its call is unsigned, so it never
    needs the credentials it is fetching.
    """
    session = sts_session(target.region)
    sts: list[Any] = []  # the fetcher asks for its client at each refresh: always this one
    credentials = refreshable_credentials(credential, target, session_name=session_name,
                                          client_creator=lambda *_, **__: sts[0])
    session.register_component("credential_provider",
                               CredentialResolver([FederatedCredentialProvider(credentials)]))
    sts.append(sts_client_creator(session, sts_config)("sts", config=Config(signature_version=UNSIGNED)))
    return session


def boto3_session(credential: TokenCredential, *, role_arn: str, audience: str, region: str,
                  session_name: str | None = None, sts_config: Config | None = None) -> boto3.Session:
    """A boto3 session for `role_arn` backed by `credential` (any azure-identity credential)."""
    target = FederationTarget(role_arn, audience, region)
    return boto3.Session(botocore_session=federated_session(credential, target, session_name=session_name,
                                                            sts_config=sts_config))


# --- process-wide sessions ------------------------------------------------------------------
_sessions: dict[tuple[Any, ...], boto3.Session] = {}
_sessions_lock = threading.Lock()


def shared_session(credential: TokenCredential, target: FederationTarget,
                   sts_config: Config | None = None) -> boto3.Session:
    """One boto3 session (so one credential refresher) per credential, target and STS config per process."""
    shape = None if sts_config is None else (sts_config.connect_timeout, sts_config.read_timeout,
                                             repr(sts_config.retries))
    key = (id(credential), target, shape)
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            session = boto3.Session(botocore_session=federated_session(credential, target, sts_config=sts_config))
            _sessions[key] = session
        return session


def client_config(timeout: float = 30, max_attempts: int = 4, pool: int = 32,
                  connect_timeout: float | None = None, **extra: Any) -> Config:
    """The botocore client config crosscloud uses: SigV4, standard retries, bounded timeouts.

    `max_attempts` counts every attempt, the first included (botocore's `total_max_attempts`;
    its `max_attempts` key would count retries only). Worst case for a service that accepts
    connections but never answers: that many timeouts plus standard mode's backoff (at
    most 1, 2, 4 ... s between attempts).
    """
    return Config(signature_version="s3v4", retries={"mode": "standard", "total_max_attempts": max_attempts},
                  connect_timeout=min(timeout, 10) if connect_timeout is None else connect_timeout,
                  read_timeout=timeout, max_pool_connections=pool, **extra)


def reset_for_tests() -> None:
    with _sessions_lock:
        _sessions.clear()
