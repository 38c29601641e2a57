"""What an Entra token says, without the token: claims, issuer version, and AWS's side of the trust.

Used by the doctor to show *what AWS must hold for this exact token*. The payload is decoded
without checking the signature: nothing here authorizes anything, it only explains. The
token string itself never leaves this module's callers' memory.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

from crosscloud.doctor import trust_policy

SHOWN = ("iss", "aud", "sub", "oid", "tid", "appid", "azp", "ver", "exp")
V1_ISSUER = re.compile(r"^https://sts\.windows\.net/([0-9a-fA-F-]{36})/$")
V2_ISSUER = re.compile(r"^https://login\.microsoftonline\.com/([0-9a-fA-F-]{36})/v2\.0$")


def decode_claims(token: str) -> dict[str, Any]:
    """The JWT payload as a dict (unverified). ValueError if `token` is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("the token is not a JWT (expected three dot-separated parts)")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        raise ValueError("the token's payload is not base64url-encoded JSON") from None
    if not isinstance(claims, dict):
        raise ValueError("the token's payload is not a JSON object")
    return claims


def shown_claims(claims: dict[str, Any]) -> dict[str, Any]:
    """The claims worth showing a person, in a stable order (absent ones left out)."""
    return {name: claims[name] for name in SHOWN if name in claims}


def issuer_version(issuer: str) -> str:
    """`v1` (sts.windows.net), `v2` (login.microsoftonline.com/.../v2.0) or `other`."""
    if V1_ISSUER.match(issuer):
        return "v1"
    if V2_ISSUER.match(issuer):
        return "v2"
    return "other"


def expiry(claims: dict[str, Any]) -> dt.datetime | None:
    try:
        return dt.datetime.fromtimestamp(int(claims["exp"]), dt.UTC)
    except (KeyError, TypeError, ValueError, OverflowError):
        return None


def single_audience(claims: dict[str, Any]) -> str:
    aud = claims.get("aud")
    return str(aud[0] if isinstance(aud, list) and aud else aud or "")


@dataclass(frozen=True)
class AwsTrust:
    """What IAM must hold so STS accepts this token for a role in `account_id`."""

    provider_url: str
    provider_arn: str
    client_id: str
    trust_policy: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"oidc_provider_url": self.provider_url, "oidc_provider_arn": self.provider_arn,
                "client_id": self.client_id, "trust_policy": self.trust_policy}


def aws_trust(claims: dict[str, Any], account_id: str) -> AwsTrust:
    """The OIDC provider, its client ID and a least-privilege trust policy for these claims.

    The policy pins both `aud` and `sub`: without `sub`, any identity in the tenant that can
    get a token for the audience could assume the role.
    """
    issuer = str(claims.get("iss", ""))
    key = trust_policy.provider_key(issuer)
    provider_arn = f"arn:aws:iam::{account_id}:oidc-provider/{key}"
    audience = single_audience(claims)
    policy = {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": trust_policy.ACTION,
            "Condition": {"StringEquals": {f"{key}:aud": audience, f"{key}:sub": str(claims.get("sub", ""))}},
        }],
    }
    return AwsTrust(issuer, provider_arn, audience, policy)
