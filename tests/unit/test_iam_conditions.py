"""devstack.iam_conditions beyond the shared table: the parts only the local STS has."""

from __future__ import annotations

import pytest

from devstack import iam_conditions as ic

ISSUER = "https://sts.windows.net/7f5c0a3e-1d2b-4c6a-9e8f-0a1b2c3d4e5f/"
KEY = ic.oidc_provider_name(ISSUER)
PROVIDER = f"arn:aws:iam::123456789012:oidc-provider/{KEY}"
SUB = "a2000000-0000-4000-8000-000000000002"


def policy(condition=None, effect="Allow", **element) -> dict:
    statement = {"Effect": effect, "Principal": {"Federated": PROVIDER},
                 **(element or {"Action": ic.WEB_IDENTITY_ACTION})}
    return {"Statement": [{**statement, "Condition": condition} if condition else statement]}


def decide(doc: dict, **claims) -> ic.Decision:
    return ic.decide(doc, PROVIDER, ic.web_identity_context(ISSUER, {"aud": "api://x", "sub": SUB, **claims}))


def test_web_identity_keys_are_aud_sub_amr_and_arrays_are_multivalued():
    context = ic.web_identity_context(ISSUER, {"aud": "api://x", "sub": SUB, "oid": SUB, "amr": ["pwd", "mfa"]})
    assert context.get(f"{KEY}:sub") == SUB
    assert context.get(f"{KEY.upper()}:AMR") == ("pwd", "mfa")
    assert context.get(f"{KEY}:oid") is None


def test_explicit_and_implicit_deny_are_told_apart():
    assert decide(policy(effect="Deny")) is ic.Decision.EXPLICIT_DENY
    assert decide(policy({"StringEquals": {f"{KEY}:sub": "someone-else"}})) is ic.Decision.IMPLICIT_DENY
    assert decide(policy()) is ic.Decision.ALLOW


def test_a_multivalued_key_needs_a_set_operator():
    """IAM docs, 'Single-valued vs. multivalued context keys': multivalued keys require ForAnyValue/ForAllValues."""
    plain = policy({"StringEquals": {f"{KEY}:amr": "mfa"}})
    assert decide(plain, amr=["mfa"]) is ic.Decision.IMPLICIT_DENY
    assert decide(policy({"ForAnyValue:StringEquals": {f"{KEY}:amr": "mfa"}}), amr=["mfa"]) is ic.Decision.ALLOW


def test_not_action_admits_every_action_it_does_not_name():
    assert decide(policy(NotAction="sts:AssumeRole")) is ic.Decision.ALLOW
    assert decide(policy(NotAction="sts:AssumeRoleWith*")) is ic.Decision.IMPLICIT_DENY


@pytest.mark.parametrize("operator", ["NumericLessThan", "DateGreaterThan", "Bool", "ForEvery:StringEquals"])
def test_operators_devstack_does_not_implement_are_refused_loudly(operator):
    with pytest.raises(ic.UnsupportedCondition, match=operator.split(":")[0]):
        decide(policy({operator: {f"{KEY}:sub": "1"}}))


def test_a_policy_without_statements_is_an_error():
    with pytest.raises(ValueError, match="Statement"):
        ic.decide('{"Version": "2012-10-17"}', PROVIDER, ic.RequestContext({}))
