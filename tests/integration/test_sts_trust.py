"""The local STS judges each role's own trust policy as AWS does (devstack/iam_conditions.py).

AWS answers AssumeRoleWithWebIdentity with AccessDenied when the trust policy does not admit
the token. Every refusal here is paired with an identity the same policy admits, so an STS
that refused everything would fail too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization

from devstack import config
from devstack.identity_server import mint_token

pytestmark = pytest.mark.integration
KEY = config.ISSUER.removeprefix("https://")
PROVIDER = f"arn:aws:iam::{config.ACCOUNT_ID}:oidc-provider/{KEY}"
APP, OTHER = config.APP_IDENTITY, config.OTHER_IDENTITY


@pytest.fixture(scope="module")
def issuer_key(devstack_env):
    pem = Path(devstack_env["DEVSTACK_ISSUER_KEY"]).read_bytes()
    return serialization.load_pem_private_key(pem, password=None)


@pytest.fixture
def role_trusting(devstack_env) -> Iterator[Callable[..., str]]:
    """Create throwaway roles with the given trust policy statements; returns their ARNs."""
    iam = boto3.client("iam", endpoint_url=devstack_env["AWS_ENDPOINT_URL_IAM"],
                       region_name=devstack_env["AWS_REGION"],
                       aws_access_key_id=devstack_env["DEVSTACK_AWS_ADMIN_ACCESS_KEY_ID"],
                       aws_secret_access_key=devstack_env["DEVSTACK_AWS_ADMIN_SECRET_ACCESS_KEY"])
    names: list[str] = []

    def create(*statements: dict[str, Any]) -> str:
        name = f"trust-test-{uuid.uuid4().hex[:8]}"
        names.append(name)
        document = {"Version": "2012-10-17", "Statement": list(statements)}
        return iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(document))["Role"]["Arn"]

    yield create
    for name in names:
        iam.delete_role(RoleName=name)


def allow(condition: dict[str, Any] | None, effect: str = "Allow", provider: str = PROVIDER) -> dict[str, Any]:
    statement = {"Effect": effect, "Principal": {"Federated": provider}, "Action": "sts:AssumeRoleWithWebIdentity"}
    return {**statement, "Condition": condition} if condition else statement


def outcome(env: dict[str, str], issuer_key: Any, identity: config.Identity, role_arn: str) -> str:
    """'ok', or the error code STS answered for this identity's token."""
    sts = boto3.client("sts", endpoint_url=env["AWS_ENDPOINT_URL_STS"], region_name=env["AWS_REGION"],
                       config=Config(signature_version=botocore.UNSIGNED))
    token = mint_token(issuer_key, identity, config.AUDIENCE, ttl=600)
    try:
        sts.assume_role_with_web_identity(RoleArn=role_arn, RoleSessionName="trust-test", WebIdentityToken=token)
    except ClientError as exc:
        return exc.response["Error"]["Code"]
    return "ok"


def test_string_like_on_sub_admits_the_matching_identity_only(devstack_env, issuer_key, role_trusting):
    role = role_trusting(allow({"StringEquals": {f"{KEY}:aud": config.AUDIENCE},
                                "StringLike": {f"{KEY}:sub": f"{APP.principal_id[:8]}-*"}}))
    assert outcome(devstack_env, issuer_key, APP, role) == "ok"
    assert outcome(devstack_env, issuer_key, OTHER, role) == "AccessDenied"


def test_explicit_deny_wins_over_allow(devstack_env, issuer_key, role_trusting):
    role = role_trusting(allow({"StringEquals": {f"{KEY}:aud": config.AUDIENCE}}),
                         allow({"StringEquals": {f"{KEY}:sub": APP.principal_id}}, effect="Deny"))
    assert outcome(devstack_env, issuer_key, APP, role) == "AccessDenied"
    assert outcome(devstack_env, issuer_key, OTHER, role) == "ok"


def test_oid_is_not_a_web_identity_condition_key(devstack_env, issuer_key, role_trusting):
    """AWS sets only `<provider>:aud`, `:sub`, `:amr` from the token: a condition on `:oid` never holds."""
    on_oid = role_trusting(allow({"StringEquals": {f"{KEY}:oid": APP.principal_id}}))
    on_sub = role_trusting(allow({"StringEquals": {f"{KEY}:sub": APP.principal_id}}))
    assert outcome(devstack_env, issuer_key, APP, on_oid) == "AccessDenied"
    assert outcome(devstack_env, issuer_key, APP, on_sub) == "ok"


def test_a_policy_for_another_provider_admits_nobody_from_this_one(devstack_env, issuer_key, role_trusting):
    other = f"arn:aws:iam::{config.ACCOUNT_ID}:oidc-provider/token.actions.githubusercontent.com"
    role = role_trusting(allow(None, provider=other))
    assert outcome(devstack_env, issuer_key, APP, role) == "AccessDenied"
    assert outcome(devstack_env, issuer_key, APP, role_trusting(allow(None))) == "ok"
