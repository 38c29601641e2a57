"""moto, made as strict as AWS where crosscloud depends on it. Extended in-process, not forked.

moto's IAM enforcement checks SigV4 signatures and identity policies, but two gaps matter
to us and are closed here by wrapping two moto entry points:

1. With enforcement on, moto reads the `Authorization` header of *every* request, so the
   unsigned `AssumeRoleWithWebIdentity` call crashes it, an unsigned S3 call crashes
   instead of being refused, and presigned S3 URLs are not verified. `guarded_authorize`
   lets the web-identity call through (it authenticates with its token), verifies
   presigned query signatures and expiry, and refuses anything else unsigned.
2. moto's `AssumeRoleWithWebIdentity` accepts any token. `validate_web_identity` checks it
   the way STS does: registered OIDC provider for `iss`, `aud` in its client-ID list,
   RS256 signature against the issuer's JWKS, expiry, the role's existence and its trust
   policy, judged by `devstack.iam_conditions` (written from AWS's IAM policy docs, never
   crosscloud's evaluator, which tests/unit/test_trust_differential.py holds to the same
   verdicts), answering with AWS's error codes.

Known gap, left as moto has it: conditions in *identity* policies are not evaluated
(moto checks StringEquals only, without request context), so the backup role's
`s3:prefix` condition on ListBucket is not enforced locally. Writes are still confined to
the backup prefix by the policies' Resource ARNs, which moto does enforce.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import re
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlparse

import jwt
import requests
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from moto.core.authorization import ActionAuthenticatorMixin
from moto.iam.models import iam_backends
from moto.s3 import exceptions as s3_exceptions
from moto.sts.exceptions import STSClientError
from moto.sts.responses import TokenResponse

from devstack import config, iam_conditions

log = logging.getLogger("devstack.aws")
UNSIGNED_STS_ACTIONS = {"AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"}
SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}")

stats: Counter[str] = Counter()
_stats_lock = threading.Lock()


def _count(name: str) -> None:
    with _stats_lock:
        stats[name] += 1


def stats_snapshot() -> dict[str, int]:
    with _stats_lock:
        return {f"aws:{k}": v for k, v in stats.items()}


class StsError(STSClientError):
    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(code, message)
        self.code_status = status


class OidcDiscovery:
    """Where the emulator fetches an issuer's keys. AWS fetches `<iss>/.well-known/...`;
    the local issuer is shaped like Entra's, so its host is mapped to the local endpoint."""

    def __init__(self, issuer_bases: dict[str, str]):
        self.issuer_bases = issuer_bases  # issuer -> base URL serving discovery + JWKS

    def signing_key(self, issuer: str, kid: str | None) -> Any:
        base = self.issuer_bases.get(issuer)
        if base is None:
            raise StsError("IDPCommunicationError",
                           "Couldn't retrieve verification key from your identity provider, "
                           "please reference AssumeRoleWithWebIdentity documentation for "
                           "requirements")
        try:
            discovery = requests.get(f"{base}/.well-known/openid-configuration", timeout=5).json()
            jwks = requests.get(discovery["jwks_uri"], timeout=5).json()
        except (requests.RequestException, ValueError, KeyError):
            raise StsError("IDPCommunicationError",
                           "Couldn't retrieve verification key from your identity provider, "
                           "please reference AssumeRoleWithWebIdentity documentation for "
                           "requirements") from None
        for jwk in jwks.get("keys", []):
            if kid is None or jwk.get("kid") == kid:
                return jwt.PyJWK(jwk).key
        raise StsError("InvalidIdentityToken",
                       "Couldn't verify the token: no key in the identity provider's JWKS "
                       f"matches kid {kid!r}")


def validate_web_identity(params: dict[str, str], discovery: OidcDiscovery) -> dict[str, Any]:
    """STS's checks on AssumeRoleWithWebIdentity; returns the verified claims."""
    token = params.get("WebIdentityToken") or ""
    role_arn = params.get("RoleArn") or ""
    session = params.get("RoleSessionName") or ""
    if not SESSION_NAME.fullmatch(session):
        raise StsError("ValidationError",
                       f"1 validation error detected: Value '{session}' at 'roleSessionName' "
                       "failed to satisfy constraint: Member must satisfy regular expression "
                       r"pattern: [\w+=,.@-]* and have length between 2 and 64")
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise StsError("InvalidIdentityToken", "Couldn't parse the web identity token") from None
    issuer = str(unverified.get("iss", ""))
    account = config.ACCOUNT_ID
    iam = iam_backends[account]["aws"]
    provider_arn = f"arn:aws:iam::{account}:oidc-provider/{iam_conditions.oidc_provider_name(issuer)}"
    provider = iam.open_id_providers.get(provider_arn)
    if provider is None:
        raise StsError("InvalidIdentityToken",
                       f"No OpenIDConnect provider found in your account for {issuer}")
    audiences = unverified.get("aud")
    audiences = audiences if isinstance(audiences, list) else [audiences]
    if not any(a in provider.client_id_list for a in audiences):
        raise StsError("InvalidIdentityToken", "Incorrect token audience")
    key = discovery.signing_key(issuer, header.get("kid"))
    try:
        claims = jwt.decode(token, key, algorithms=["RS256"],
                            options={"verify_aud": False, "verify_exp": False})
    except jwt.PyJWTError:
        raise StsError("InvalidIdentityToken",
                       "The web identity token signature could not be verified") from None
    now = int(time.time())
    if int(claims.get("exp", 0)) <= now:
        expired = dt.datetime.fromtimestamp(int(claims.get("exp", 0)), dt.UTC)
        raise StsError("ExpiredTokenException",
                       f"Token expired: current date/time {now} must be before the "
                       f"expiration date/time {int(expired.timestamp())}")
    if int(claims.get("nbf", 0)) > now + 300:
        raise StsError("InvalidIdentityToken", "Token is not yet valid (nbf)")
    role_name = role_arn.rsplit("/", 1)[-1]
    not_authorized = StsError("AccessDenied",
                              "Not authorized to perform sts:AssumeRoleWithWebIdentity", 403)
    try:
        role = iam.get_role(role_name)
    except Exception:  # moto raises its own NotFound; AWS answers AccessDenied
        raise not_authorized from None
    if role.arn != role_arn:
        raise not_authorized
    try:
        decision = iam_conditions.decide(role.assume_role_policy_document, provider_arn,
                                         iam_conditions.web_identity_context(issuer, claims))
    except iam_conditions.UnsupportedCondition as exc:
        log.warning("trust policy of %s cannot be judged locally: %s", role_arn, exc)
        raise not_authorized from None
    if decision is not iam_conditions.Decision.ALLOW:
        log.info("trust policy refused %s: %s", role_arn, decision.value)
        raise not_authorized
    duration = int(params.get("DurationSeconds") or 3600)
    if not 900 <= duration <= int(role.max_session_duration):
        raise StsError("ValidationError",
                       f"The requested DurationSeconds exceeds the MaxSessionDuration set "
                       f"for this role ({role.max_session_duration}) or is below 900")
    return claims


def verify_presigned(method: str, url: str, host: str, credentials: Credentials) -> None:
    """Check a SigV4 query-signed URL's signature and expiry against `credentials`."""
    parsed = urlparse(url)
    pairs = parse_qsl(parsed.query, keep_blank_values=True)
    query = dict(pairs)
    try:
        _key, _date, region, service, _ = query["X-Amz-Credential"].split("/")
        amz_date = query["X-Amz-Date"]
        expires = int(query["X-Amz-Expires"])
        signature = query["X-Amz-Signature"]
        signed_at = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except (KeyError, ValueError):
        raise s3_exceptions.S3AccessDeniedError() from None
    if dt.datetime.now(dt.UTC) > signed_at + dt.timedelta(seconds=expires):
        raise s3_exceptions.S3AccessDeniedError()
    unsigned = urlencode([(k, v) for k, v in pairs if k != "X-Amz-Signature"], quote_via=quote)
    request = AWSRequest(method=method, url=f"{parsed.scheme or 'http'}://{host}{parsed.path}?{unsigned}",
                         headers={"host": host})
    request.context["timestamp"] = amz_date
    auth = S3SigV4QueryAuth(credentials, service, region, expires=expires)
    string_to_sign = auth.string_to_sign(request, auth.canonical_request(request))
    if not hmac.compare_digest(auth.signature(string_to_sign, request), signature):
        raise s3_exceptions.S3SignatureDoesNotMatchError()


def authorize_presigned(method: str, url: str, host: str, resource: str) -> None:
    """Authenticate a presigned S3 request and check the signer's policies, as moto does
    for signed ones: the signer is found (and its session token checked) by moto's own
    `create_access_key`, the one lookup its header-signed path uses."""
    from moto.iam.access_control import CreateAccessKeyFailure, IAMPolicy, PermissionResult, create_access_key

    query = dict(parse_qsl(urlparse(url).query, keep_blank_values=True))
    access_key_id = query.get("X-Amz-Credential", "").split("/")[0]
    try:
        key = create_access_key(account_id=config.ACCOUNT_ID, partition="aws", access_key_id=access_key_id,
                                headers={"X-Amz-Security-Token": query.get("X-Amz-Security-Token", "")})
    except CreateAccessKeyFailure as failure:
        if failure.reason == "InvalidToken":
            raise s3_exceptions.S3InvalidTokenError() from None
        raise s3_exceptions.S3InvalidAccessKeyIdError() from None
    verify_presigned(method, url, host, key.create_credentials())
    action = "s3:GetObject" if method in ("GET", "HEAD") else f"s3:{method}"
    permitted = False
    for policy in key.collect_policies():
        result = IAMPolicy(policy).is_action_permitted(action, resource)
        if result == PermissionResult.DENIED:
            raise s3_exceptions.S3AccessDeniedError()
        permitted = permitted or result == PermissionResult.PERMITTED
    if not permitted:
        raise s3_exceptions.S3AccessDeniedError()


def install(discovery: OidcDiscovery) -> None:
    """Wrap moto's authorizer and its AssumeRoleWithWebIdentity handler (idempotent)."""
    if getattr(ActionAuthenticatorMixin, "_devstack_installed", False):
        return
    original_authorize = ActionAuthenticatorMixin._authenticate_and_authorize_action
    original_assume = TokenResponse.assume_role_with_web_identity

    def guarded_authorize(self: Any, iam_request_cls: type, resource: str = "*") -> None:
        from moto import settings

        enforcing = ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT
        if enforcing and "Authorization" not in self.headers:
            action = self._get_action() if isinstance(self, TokenResponse) else None
            if action in UNSIGNED_STS_ACTIONS:
                return None  # authenticated by the token itself, checked in the handler
            if iam_request_cls.__name__ == "S3IAMRequest":
                if "X-Amz-Signature=" in self.uri:
                    return authorize_presigned(self.method, self.uri, self.headers.get("Host", ""), resource)
                raise s3_exceptions.S3AccessDeniedError()
            raise StsError("MissingAuthenticationToken", "Request is missing Authentication Token", 403)
        return original_authorize(self, iam_request_cls, resource)

    def assume_role_with_web_identity(self: Any) -> Any:
        _count("AssumeRoleWithWebIdentity")
        params = {k: self._get_param(k) for k in
                  ("WebIdentityToken", "RoleArn", "RoleSessionName", "DurationSeconds")}
        claims = validate_web_identity(params, discovery)
        result = original_assume(self)
        result.result["SubjectFromWebIdentityToken"] = claims["sub"]
        result.result["Audience"] = claims["aud"]
        result.result["Provider"] = f"arn:aws:iam::{config.ACCOUNT_ID}:oidc-provider/" \
                                    f"{iam_conditions.oidc_provider_name(claims['iss'])}"
        _count("AssumeRoleWithWebIdentity:ok")
        return result

    ActionAuthenticatorMixin._authenticate_and_authorize_action = guarded_authorize
    TokenResponse.assume_role_with_web_identity = assume_role_with_web_identity
    ActionAuthenticatorMixin._devstack_installed = True
