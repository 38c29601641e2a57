"""The doctor's checks up to the token's claims: settings, identity, Azure Storage, the Entra
token for AWS and its claims (the AWS side is in `aws.py`).

Each check reads what earlier checks left in the `Context` and returns an `Outcome`; a check
that needs an earlier one which did not pass raises `Skip` naming it. Tokens and AWS
credentials live only in the `Context` (memory), never in an `Outcome`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlparse

from crosscloud.auth import identity
from crosscloud.doctor import entra_errors, token_claims
from crosscloud.doctor.model import Context, Outcome
from crosscloud.errors import CrossCloudError, IdentityError, SettingError
from crosscloud.settings import Settings
from crosscloud.stores import factory

STORAGE_RESOURCE = "https://storage.azure.com"


# --- settings and identity -------------------------------------------------------------------
SETTINGS: tuple[tuple[str, Callable[[Settings], Any]], ...] = (
    ("AZURE_CLIENT_ID", lambda s: s.azure_client_id),
    ("AZURE_STORAGE_CONTAINER_URL", lambda s: s.container_url.url),
    ("AWS_ROLE_ARN", lambda s: s.aws_role_arn),
    ("AWS_WEB_IDENTITY_AUDIENCE", lambda s: s.aws_audience),
    ("AWS_REGION", lambda s: s.aws_region),
    ("S3_BUCKET", lambda s: s.s3_bucket),
    ("AWS_BACKUP_ROLE_ARN", lambda s: s.aws_backup_role_arn),
    ("BACKUP_S3_BUCKET", lambda s: s.backup_bucket),
    ("BACKUP_S3_PREFIX", lambda s: s.backup_prefix),
)
AMBIENT_AWS_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
ENDPOINT_VARS = ("IDENTITY_ENDPOINT", "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_IAM")


def check_settings(ctx: Context) -> Outcome:
    problems: list[str] = []
    for name, read in SETTINGS:
        try:
            ctx.values[name] = read(ctx.settings)
        except SettingError as exc:
            ctx.bad_settings.add(name)
            if exc.message not in problems:
                problems.append(exc.message)
    data = {"settings": dict(ctx.values),
            "endpoints": {n: ctx.env[n] for n in ENDPOINT_VARS if ctx.env.get(n)}}
    if problems:
        return Outcome("fail", "; ".join(problems), "set them in the Function App's application settings "
                       "(locally: local.settings.json or the environment)", data)
    ambient = [n for n in AMBIENT_AWS_KEYS if ctx.env.get(n)]
    if ambient:
        return Outcome("warn", f"all {len(SETTINGS)} settings are well-formed, but {', '.join(ambient)} "
                       "is set: crosscloud never uses AWS keys (federation only), and none should be stored",
                       f"remove {', '.join(ambient)} from the app settings", data)
    return Outcome("pass", f"all {len(SETTINGS)} settings present and well-formed", data=data)


def endpoint_kind(env: Mapping[str, str]) -> str:
    """Which managed-identity source azure-identity will use here, in its own order of checks."""
    if env.get("IDENTITY_ENDPOINT"):
        if env.get("IDENTITY_HEADER"):
            kind = "Service Fabric" if env.get("IDENTITY_SERVER_THUMBPRINT") else "App Service"
            return f"{kind} identity endpoint {env['IDENTITY_ENDPOINT']}"
        if env.get("IMDS_ENDPOINT"):
            return f"Azure Arc identity endpoint {env['IDENTITY_ENDPOINT']}"
        return "no usable source (IDENTITY_ENDPOINT is set without IDENTITY_HEADER or IMDS_ENDPOINT)"
    if env.get("MSI_ENDPOINT"):
        kind = "Azure ML" if env.get("MSI_SECRET") else "Cloud Shell"
        return f"{kind} MSI endpoint {env['MSI_ENDPOINT']}"
    if all(env.get(v) for v in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE")):
        return "workload identity (AZURE_FEDERATED_TOKEN_FILE)"
    return "Azure Instance Metadata Service (IMDS, 169.254.169.254)"


def check_identity(ctx: Context) -> Outcome:
    ctx.needs(settings=("AZURE_CLIENT_ID",))
    client_id = ctx.values["AZURE_CLIENT_ID"]
    ctx.who = identity.describe(client_id)
    ctx.credential = identity.managed_identity(client_id)
    source = endpoint_kind(ctx.env)
    chosen = "AZURE_CLIENT_ID" if client_id else "AZURE_CLIENT_ID unset"
    return Outcome("pass", f"{ctx.who} ({chosen}); tokens from the {source}",
                   data={"kind": "user-assigned" if client_id else "system-assigned",
                         "client_id": client_id, "endpoint": source})


def _token(ctx: Context, resource: str, setting: str | None) -> tuple[str | None, Outcome | None]:
    """A token for `resource`, or the failed Outcome explaining Entra's refusal."""
    assert ctx.credential is not None
    try:
        return identity.get_token(ctx.credential, resource, ctx.who).token, None
    except IdentityError as exc:
        problem = entra_errors.explain(exc.message, resource=resource, who=ctx.who, setting=setting)
        named = f"{resource} ({setting})" if setting else resource
        return None, Outcome("fail", f"no token for {named}: {problem.cause} (Entra said: "
                             f"{problem.entra_message})", problem.fix, {"code": problem.code})


# --- Azure -----------------------------------------------------------------------------------
def check_storage_token(ctx: Context) -> Outcome:
    ctx.needs("identity")
    token, failed = _token(ctx, STORAGE_RESOURCE, None)
    if failed:
        return failed
    assert token is not None
    claims = token_claims.decode_claims(token)
    ctx.principal = str(claims.get("oid") or "") or None
    return Outcome("pass", f"token for {STORAGE_RESOURCE} obtained: principal (oid) {ctx.principal}, "
                   f"tenant {claims.get('tid')}",
                   data={k: claims[k] for k in ("oid", "tid", "appid") if k in claims})


def _container_scope(container_url: str) -> tuple[str, str, str]:
    """(account, container, ARM scope with placeholders) for a role assignment on the container."""
    parsed = urlparse(container_url)
    segments = [s for s in parsed.path.split("/") if s]
    account = segments[0] if len(segments) == 2 else (parsed.hostname or "").split(".")[0]
    container = segments[-1]
    scope = (f"/subscriptions/<subscription-id>/resourceGroups/<resource-group>/providers/"
             f"Microsoft.Storage/storageAccounts/{account}/blobServices/default/containers/{container}")
    return account, container, scope


def check_container(ctx: Context) -> Outcome:
    ctx.needs("storage_token", settings=("AZURE_STORAGE_CONTAINER_URL",))
    url = ctx.values["AZURE_STORAGE_CONTAINER_URL"]
    try:
        page = next(iter(factory.azure_store(ctx.settings).list_pages(page_size=1)), None)
    except CrossCloudError as exc:
        _, container, scope = _container_scope(url)
        if exc.code == "azure_forbidden":
            assignee = f"--assignee-object-id {ctx.principal} --assignee-principal-type ServicePrincipal" \
                if ctx.principal else "--assignee <identity-object-id>"
            fix = (f"assign 'Storage Blob Data Reader' on container {container} to {ctx.who}: az role assignment "
                   f"create {assignee} --role 'Storage Blob Data Reader' --scope {scope}")
        elif exc.code == "azure_container_not_found":
            fix = f"create container {container}, or fix AZURE_STORAGE_CONTAINER_URL"
        else:
            fix = "check the storage account's network rules and that AZURE_STORAGE_CONTAINER_URL is reachable"
        return Outcome("fail", exc.message, fix, {"code": exc.code})
    listed = "at least one blob" if page and page.items else "no blobs (empty container)"
    return Outcome("pass", f"listed {url}: {listed}")


# --- Entra token for AWS ---------------------------------------------------------------------
def check_aws_token(ctx: Context) -> Outcome:
    ctx.needs("identity", settings=("AWS_WEB_IDENTITY_AUDIENCE",))
    audience = ctx.values["AWS_WEB_IDENTITY_AUDIENCE"]
    token, failed = _token(ctx, audience, "AWS_WEB_IDENTITY_AUDIENCE")
    if failed:
        return failed
    ctx.token = token
    return Outcome("pass", f"token for {audience} (AWS_WEB_IDENTITY_AUDIENCE) obtained")


def check_claims(ctx: Context) -> Outcome:
    ctx.needs("aws_token")
    assert ctx.token is not None
    try:
        claims = token_claims.decode_claims(ctx.token)
    except ValueError as exc:
        return Outcome("fail", f"the token for AWS_WEB_IDENTITY_AUDIENCE cannot be read: {exc}",
                       "AWS STS needs a JWT access token; check the identity endpoint")
    ctx.claims = claims
    issuer = str(claims.get("iss", ""))
    version = token_claims.issuer_version(issuer)
    account = str(ctx.values.get("AWS_ROLE_ARN", "arn:aws:iam::<account-id>:")).split(":")[4] or "<account-id>"
    ctx.trust = token_claims.aws_trust(claims, account)
    shown = token_claims.shown_claims(claims)
    expires = token_claims.expiry(claims)
    if expires:
        shown["exp"] = f"{claims['exp']} ({expires.isoformat().replace('+00:00', 'Z')})"
    notes = _claim_notes(ctx, claims, version, expires)
    described = {"v1": "v1 token (issuer https://sts.windows.net/<tid>/)",
                 "v2": "v2 token (issuer https://login.microsoftonline.com/<tid>/v2.0)",
                 "other": f"token from {issuer or 'no issuer'} (not an Entra ID v1/v2 issuer)"}[version]
    detail = (f"{described}, aud {ctx.trust.client_id}, sub {claims.get('sub')}. AWS must hold: the IAM OIDC "
              f"provider {ctx.trust.provider_url} with client ID {ctx.trust.client_id}, and a role trust policy "
              "admitting this aud and sub (data.aws.trust_policy)")
    data = {"claims": shown, "issuer_version": version, "aws": ctx.trust.as_json(), "notes": notes}
    if notes:
        return Outcome("warn", detail + ". " + " ".join(notes), "see the notes", data)
    return Outcome("pass", detail, data=data)


def _claim_notes(ctx: Context, claims: dict[str, Any], version: str,
                 expires: dt.datetime | None) -> list[str]:
    notes = []
    audience = ctx.values.get("AWS_WEB_IDENTITY_AUDIENCE")
    aud = token_claims.single_audience(claims)
    if version == "v2" or str(claims.get("ver")) == "2.0":
        notes.append(f"v2 token: its aud is the API's application (client) ID {aud}, not the App ID URI; the "
                     "OIDC provider's client ID list and the trust policy's aud must use that value.")
    elif audience and aud.rstrip("/") != audience.rstrip("/"):
        notes.append(f"the token's aud {aud} differs from AWS_WEB_IDENTITY_AUDIENCE {audience}.")
    client_id = ctx.values.get("AZURE_CLIENT_ID")
    issued_to = claims.get("appid") or claims.get("azp")
    if client_id and issued_to and str(issued_to).lower() != client_id.lower():
        notes.append(f"the token was issued to client {issued_to}, not AZURE_CLIENT_ID {client_id}.")
    if expires and expires <= dt.datetime.now(dt.UTC):
        notes.append("the token is already expired: check the host clock.")
    return notes
