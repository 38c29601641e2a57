"""The doctor's AWS checks: the STS exchange, the trust policy, S3 listing and the backup probe.

Same contract as `doctor_checks`: each check reads the `Context`, returns an `Outcome`, or
raises `Skip`. The STS credentials obtained here stay in the `Context`, used only to read
the role's own trust policy.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any
from urllib.parse import unquote

import boto3
import botocore.session
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from crosscloud.auth.federation import explain_sts_error, role_session_name
from crosscloud.doctor import token_claims, trust_policy
from crosscloud.doctor.model import Context, Outcome, Skip
from crosscloud.errors import CrossCloudError
from crosscloud.stores import factory
from crosscloud.stores.s3 import s3_errors


def _sts_client(region: str):  # noqa: ANN202 - botocore client type
    session = botocore.session.Session()
    session.set_config_variable("region", region)
    config = Config(signature_version=UNSIGNED, retries={"mode": "standard", "max_attempts": 2},
                    connect_timeout=10, read_timeout=20)
    return session.create_client("sts", config=config)


def _sts_fix(code: str, message: str, ctx: Context) -> str:
    trust, claims = ctx.trust, ctx.claims or {}
    assert trust is not None
    key = trust_policy.provider_key(trust.provider_url)
    low = message.lower()
    if code == "InvalidIdentityToken" and "openidconnect provider" in low:
        return (f"create the IAM OIDC provider for this issuer: aws iam create-open-id-connect-provider "
                f"--url {trust.provider_url} --client-id-list {trust.client_id}")
    if code == "InvalidIdentityToken" and "audience" in low:
        return (f"add the token's aud to the provider: aws iam add-client-id-to-open-id-connect-provider "
                f"--open-id-connect-provider-arn {trust.provider_arn} --client-id {trust.client_id} "
                "(or set AWS_WEB_IDENTITY_AUDIENCE to a client ID the provider already lists)")
    if code == "IDPCommunicationError":
        return (f"retry; if it persists, make the provider URL exactly the token's iss ({trust.provider_url}) "
                "and check that its /.well-known/openid-configuration and JWKS are reachable from AWS")
    if code == "ExpiredTokenException":
        return "synchronise the host clock (NTP) and retry"
    if code == "AccessDenied":
        return (f"check that AWS_ROLE_ARN ({ctx.values.get('AWS_ROLE_ARN')}) names an existing role and that "
                f"its trust policy admits this token: Principal.Federated {trust.provider_arn}, StringEquals "
                f"{key}:aud = {trust.client_id} and {key}:sub = {claims.get('sub')} (policy under "
                "token_claims); " + ("trust_policy names the failing condition" if ctx.trust_policy is not None
                                     else "pass --trust-policy FILE to have the failing condition named"))
    return "see AWS's message"


def check_sts(ctx: Context) -> Outcome:
    ctx.needs("token_claims", settings=("AWS_ROLE_ARN", "AWS_REGION"))
    role, region = ctx.values["AWS_ROLE_ARN"], ctx.values["AWS_REGION"]
    try:
        response = _sts_client(region).assume_role_with_web_identity(
            RoleArn=role, RoleSessionName=role_session_name("doctor"), WebIdentityToken=ctx.token)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = str(error.get("Code", "Unknown")), str(error.get("Message", ""))
        ctx.sts_error = code
        cause, retryable = explain_sts_error(code, message, role, ctx.values["AWS_WEB_IDENTITY_AUDIENCE"])
        if code == "AccessDenied":  # AWS says the same for a missing role and a refusing trust policy
            cause = (f"the role does not exist, or its trust policy (Principal.Federated, aud/sub conditions) "
                     f"does not admit this token (sub {(ctx.claims or {}).get('sub')})")
        return Outcome("fail", f"STS refused AssumeRoleWithWebIdentity for {role} ({code}: {message}): {cause}",
                       _sts_fix(code, message, ctx), {"code": code, "retryable": retryable})
    except BotoCoreError as exc:
        ctx.sts_error = "unreachable"
        return Outcome("fail", f"AWS STS could not be reached ({type(exc).__name__})",
                       "check AWS_REGION, AWS_ENDPOINT_URL_STS and outbound network access to STS",
                       {"code": "sts_unreachable", "retryable": True})
    ctx.aws_credentials = response["Credentials"]
    assumed = response.get("AssumedRoleUser", {}).get("Arn", role)
    until = ctx.aws_credentials["Expiration"]
    until_text = until.strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(until, dt.datetime) else str(until)
    return Outcome("pass", f"assumed {assumed} as sub {response.get('SubjectFromWebIdentityToken')} "
                   f"(credentials valid until {until_text})",
                   data={"assumed_role": assumed, "provider": response.get("Provider"),
                         "audience": response.get("Audience")})


def _read_trust_policy(ctx: Context) -> dict[str, Any]:
    """The role's trust policy via iam:GetRole, with the role's own credentials."""
    assert ctx.aws_credentials is not None
    creds = ctx.aws_credentials
    iam = boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"], region_name=ctx.values["AWS_REGION"]) \
        .client("iam", config=Config(retries={"mode": "standard", "max_attempts": 2}, read_timeout=20))
    document = iam.get_role(RoleName=ctx.values["AWS_ROLE_ARN"].rsplit("/", 1)[-1])["Role"]
    return policy_document(document.get("AssumeRolePolicyDocument"))


def policy_document(value: Any) -> dict[str, Any]:
    """A trust policy from a dict, JSON text, URL-encoded JSON (raw IAM API) or `get-role` output."""
    if isinstance(value, str):
        text = value.strip()
        value = json.loads(text if text.startswith("{") else unquote(text))
    if isinstance(value, dict) and isinstance(value.get("Role"), dict):
        return policy_document(value["Role"].get("AssumeRolePolicyDocument"))
    return trust_policy.load(value)


def check_trust_policy(ctx: Context) -> Outcome:
    ctx.needs("token_claims", settings=("AWS_ROLE_ARN",))
    role = ctx.values["AWS_ROLE_ARN"]
    policy, source = ctx.trust_policy, ctx.trust_policy_source
    if policy is None:
        if ctx.aws_credentials is None:
            raise Skip("the role's trust policy cannot be read without AWS credentials (STS refused): pass "
                       "--trust-policy FILE to evaluate it offline and name the failing condition")
        try:
            policy, source = _read_trust_policy(ctx), f"iam:GetRole {role}"
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            return Outcome("warn", f"cannot read the trust policy of {role} ({code}: the role may not call "
                           "iam:GetRole on itself), so the sub condition was not checked",
                           f"pass --trust-policy FILE, exported by an IAM reader with: aws iam get-role "
                           f"--role-name {role.rsplit('/', 1)[-1]} --query Role.AssumeRolePolicyDocument "
                           "> trust.json", {"code": code})
        except BotoCoreError as exc:
            return Outcome("warn", f"IAM could not be reached to read the trust policy ({type(exc).__name__})",
                           "pass --trust-policy FILE, or check AWS_ENDPOINT_URL_IAM / network access to IAM")
    return _evaluate(ctx, policy, source or "the given file")


def _evaluate(ctx: Context, policy: dict[str, Any], source: str) -> Outcome:
    assert ctx.trust is not None
    assert ctx.claims is not None
    issuer = str(ctx.claims.get("iss", ""))
    key = trust_policy.provider_key(issuer)
    context = trust_policy.context_from_claims(issuer, ctx.claims)
    verdict = trust_policy.evaluate(policy, ctx.trust.provider_arn, context)
    unpinned = trust_policy.subject_unconstrained(policy, ctx.trust.provider_arn, key)
    data = {"source": source, "allowed": verdict.allowed, "failed_conditions": verdict.failed_conditions,
            "subject_unconstrained": unpinned}
    problems, fixes = [], []
    if not verdict.allowed:
        failed = "; ".join(verdict.failed_conditions)
        problems.append(f"the trust policy ({source}) does not admit this token: {verdict.reason}"
                        + (f": {failed}" if failed else ""))
        fixes.extend(_condition_fixes(ctx, verdict.failed_conditions, key) or
                     [f"make Principal.Federated {ctx.trust.provider_arn} with the conditions shown under "
                      "token_claims"])
    if unpinned:
        problems.append(f"privilege-escalation risk: the trust policy ({source}) admits this provider without "
                        f"a {key}:sub condition, so any identity in tenant {ctx.claims.get('tid')} that can get "
                        f"a token for {ctx.trust.client_id} can assume the role")
        fixes.append(f'pin the subject: "StringEquals": {{"{key}:sub": "{ctx.claims.get("sub")}"}}')
    if problems:
        if ctx.aws_credentials is not None and not verdict.allowed:
            problems.append("(STS did accept the token, so the role's policy in AWS differs from this one)")
        return Outcome("fail", "; ".join(problems), "; ".join(fixes), data)
    detail = f"the trust policy ({source}) admits this token, with aud and sub pinned"
    if ctx.sts_error == "AccessDenied":
        detail += (f"; since STS still answered AccessDenied, AWS_ROLE_ARN ({ctx.values['AWS_ROLE_ARN']}) "
                   "most likely names a role that does not exist (or is in another account), or the role in "
                   "AWS has a different trust policy than this one")
    return Outcome("pass", detail, data=data)


def _condition_fixes(ctx: Context, failed: list[str], key: str) -> list[str]:
    claims = ctx.claims or {}
    fixes = []
    for condition in failed:
        if f"{key}:sub" in condition:
            fixes.append(f"{ctx.who}'s sub is {claims.get('sub')}: add it to the {key}:sub condition, or run as "
                         "an identity the policy admits")
        elif f"{key}:aud" in condition:
            fixes.append(f"set {key}:aud to the token's aud {token_claims.single_audience(claims)}")
        elif f"{key}:oid" in condition:
            fixes.append(f"AWS sets no {key}:oid key (only aud, sub and amr reach a trust policy): pin "
                         f"{key}:sub = {claims.get('sub')} instead")
        else:
            fixes.append(f"review the condition: {condition}")
    return fixes


def check_s3_list(ctx: Context) -> Outcome:
    ctx.needs("sts_exchange", settings=("S3_BUCKET",))
    bucket, role = ctx.values["S3_BUCKET"], ctx.values["AWS_ROLE_ARN"]
    try:
        page = next(iter(factory.s3_store(ctx.settings).list_pages(page_size=1)), None)
    except CrossCloudError as exc:
        fixes = {"s3_forbidden": f"allow s3:ListBucket on arn:aws:s3:::{bucket} to {role} "
                                 "(infra/policies/s3-read.json.tpl)",
                 "s3_no_such_bucket": "create the bucket, or fix S3_BUCKET"}
        return Outcome("fail", exc.message, fixes.get(exc.code, "check AWS_REGION and the bucket's policy"),
                       {"code": exc.code})
    listed = "at least one object" if page and page.items else "no objects (empty bucket)"
    return Outcome("pass", f"listed s3://{bucket} as {role}: {listed}")


def check_backup_write(ctx: Context) -> Outcome:
    ctx.needs("aws_token", settings=("AWS_BACKUP_ROLE_ARN", "BACKUP_S3_BUCKET", "BACKUP_S3_PREFIX", "AWS_REGION"))
    role, bucket, prefix = (ctx.values[n] for n in ("AWS_BACKUP_ROLE_ARN", "BACKUP_S3_BUCKET", "BACKUP_S3_PREFIX"))
    if role == ctx.values.get("AWS_ROLE_ARN"):
        ctx.needs("sts_exchange")
    elif ctx.sts_error and ctx.sts_error != "AccessDenied":
        raise Skip(f"STS refused the token itself ({ctx.sts_error}, see sts_exchange), whichever the role")
    key = f"{prefix}.crosscloud/doctor-probe-{uuid.uuid4().hex[:12]}"
    try:
        client = factory.s3_store(ctx.settings, backup=True).client
        with s3_errors("start a multipart upload", bucket, role, key):
            upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    except CrossCloudError as exc:
        if exc.code == "s3_forbidden":
            fix = (f"allow s3:PutObject and s3:AbortMultipartUpload on arn:aws:s3:::{bucket}/{prefix}* to {role} "
                   "(infra/policies/s3-backup.json.tpl)")
        elif exc.code.startswith("sts_"):
            fix = (f"the backup role {role} (AWS_BACKUP_ROLE_ARN) must exist and trust this token like the read "
                   "role: see the trust policy under token_claims")
        else:
            fix = "see the message; the backup role is AWS_BACKUP_ROLE_ARN (default AWS_ROLE_ARN)"
        return Outcome("fail", exc.message, fix, {"code": exc.code})
    try:
        with s3_errors("abort the probe upload", bucket, role, key):
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except CrossCloudError as exc:
        return Outcome("fail", f"{exc.message}; an incomplete multipart upload of s3://{bucket}/{key} was left",
                       f"allow s3:AbortMultipartUpload on arn:aws:s3:::{bucket}/{prefix}* to {role}, and abort "
                       f"it: aws s3api abort-multipart-upload --bucket {bucket} --key {key} --upload-id "
                       f"{upload_id}", {"code": exc.code})
    return Outcome("pass", f"{role} may write under s3://{bucket}/{prefix} (a multipart upload was started and "
                   "aborted: nothing left behind)")
