"""crosscloud.doctor.trust_policy, the doctor's offline evaluator (devstack has its own: iam_conditions.py)."""

from __future__ import annotations

import json

import pytest

from crosscloud.doctor import trust_policy as tp

TENANT = "7f5c0a3e-1d2b-4c6a-9e8f-0a1b2c3d4e5f"
ISSUER = f"https://sts.windows.net/{TENANT}/"
KEY = f"sts.windows.net/{TENANT}/"
PROVIDER = f"arn:aws:iam::123456789012:oidc-provider/{KEY}"
AUD = f"api://{TENANT}/crosscloud"
SUB = "a2000000-0000-4000-8000-000000000002"
OTHER = "a3000000-0000-4000-8000-000000000003"


def policy(condition: dict | None, effect: str = "Allow", principal: str = PROVIDER, *extra: dict) -> dict:
    statement = {"Effect": effect, "Principal": {"Federated": principal},
                 "Action": "sts:AssumeRoleWithWebIdentity"}
    if condition is not None:
        statement["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [statement, *extra]}


def context(sub: str = SUB, aud: str = AUD, **claims: object) -> dict[str, list[str]]:
    return tp.context_from_claims(ISSUER, {"aud": aud, "sub": sub, "oid": sub, **claims})


def test_provider_key_and_context_keys():
    assert tp.provider_key(ISSUER) == KEY
    ctx = tp.context_from_claims(ISSUER, {"aud": AUD, "sub": SUB, "amr": ["pwd", "mfa"], "tid": TENANT})
    assert ctx == {f"{KEY}:aud": [AUD], f"{KEY}:sub": [SUB], f"{KEY}:amr": ["pwd", "mfa"]}


def test_string_equals_on_aud_and_sub_admits_the_pinned_identity():
    doc = policy({"StringEquals": {f"{KEY}:aud": AUD, f"{KEY}:sub": [SUB, OTHER]}})
    assert tp.evaluate(doc, PROVIDER, context()).allowed
    assert tp.evaluate(json.dumps(doc), PROVIDER, context(sub=OTHER)).allowed  # JSON text too


def test_string_equals_names_the_failing_sub_condition():
    doc = policy({"StringEquals": {f"{KEY}:aud": AUD, f"{KEY}:sub": SUB}})
    verdict = tp.evaluate(doc, PROVIDER, context(sub=OTHER))
    assert not verdict.allowed
    assert verdict.failed_conditions == [f'StringEquals {KEY}:sub expects "{SUB}", token has "{OTHER}"']


def test_string_equals_is_case_sensitive_but_ignorecase_is_not():
    upper = SUB.upper()
    assert not tp.evaluate(policy({"StringEquals": {f"{KEY}:sub": SUB}}), PROVIDER, context(sub=upper)).allowed
    doc = policy({"StringEqualsIgnoreCase": {f"{KEY}:sub": SUB}})
    assert tp.evaluate(doc, PROVIDER, context(sub=upper)).allowed


@pytest.mark.parametrize(("pattern", "sub", "allowed"), [
    ("a2000000-*", SUB, True),
    ("a2000000-*", OTHER, False),
    ("a?000000-0000-4000-8000-00000000000?", SUB, True),
    ("a2000000-0000-4000-8000-00000000000[2]", SUB, False),  # no character classes in IAM
    ("*", OTHER, True),
])
def test_string_like_wildcards(pattern, sub, allowed):
    doc = policy({"StringEquals": {f"{KEY}:aud": AUD}, "StringLike": {f"{KEY}:sub": pattern}})
    assert tp.evaluate(doc, PROVIDER, context(sub=sub)).allowed is allowed


def test_for_any_value_matches_one_of_a_multivalued_claim():
    doc = policy({"ForAnyValue:StringEquals": {f"{KEY}:amr": ["mfa"]}})
    assert tp.evaluate(doc, PROVIDER, context(amr=["pwd", "mfa"])).allowed
    assert not tp.evaluate(doc, PROVIDER, context(amr=["pwd"])).allowed
    assert not tp.evaluate(doc, PROVIDER, context()).allowed  # key absent: ForAnyValue fails


def test_for_all_values_requires_every_value_and_holds_when_absent():
    doc = policy({"ForAllValues:StringLike": {f"{KEY}:amr": ["pwd", "mfa"]}})
    assert tp.evaluate(doc, PROVIDER, context(amr=["pwd", "mfa"])).allowed
    assert not tp.evaluate(doc, PROVIDER, context(amr=["pwd", "rsa"])).allowed
    assert tp.evaluate(doc, PROVIDER, context()).allowed  # IAM: vacuously true for a missing key


def test_if_exists_holds_when_the_claim_is_absent_only():
    doc = policy({"StringEquals": {f"{KEY}:aud": AUD}, "StringEqualsIfExists": {f"{KEY}:amr": "mfa"}})
    assert tp.evaluate(doc, PROVIDER, context()).allowed
    assert tp.evaluate(doc, PROVIDER, context(amr="mfa")).allowed
    assert not tp.evaluate(doc, PROVIDER, context(amr="pwd")).allowed
    plain = policy({"StringEquals": {f"{KEY}:amr": "mfa"}})
    assert not tp.evaluate(plain, PROVIDER, context()).allowed


def test_negated_operator():
    doc = policy({"StringNotEquals": {f"{KEY}:sub": OTHER}})
    assert tp.evaluate(doc, PROVIDER, context()).allowed
    assert not tp.evaluate(doc, PROVIDER, context(sub=OTHER)).allowed


def test_explicit_deny_wins_over_allow():
    deny = {"Effect": "Deny", "Principal": {"Federated": PROVIDER}, "Action": "sts:*",
            "Condition": {"StringEquals": {f"{KEY}:sub": OTHER}}}
    doc = policy({"StringEquals": {f"{KEY}:aud": AUD}}, "Allow", PROVIDER, deny)
    assert tp.evaluate(doc, PROVIDER, context()).allowed
    verdict = tp.evaluate(doc, PROVIDER, context(sub=OTHER))
    assert not verdict.allowed
    assert "Deny" in verdict.reason


def test_other_provider_or_action_is_not_an_allow():
    other = "arn:aws:iam::123456789012:oidc-provider/login.microsoftonline.com/x/v2.0"
    verdict = tp.evaluate(policy(None, principal=other), PROVIDER, context())
    assert not verdict.allowed
    assert PROVIDER in verdict.reason
    wrong_action = {"Version": "2012-10-17", "Statement": {
        "Effect": "Allow", "Principal": {"Federated": PROVIDER}, "Action": "sts:AssumeRole"}}
    assert not tp.evaluate(wrong_action, PROVIDER, context()).allowed


def test_policy_without_statement_is_rejected():
    with pytest.raises(ValueError, match="Statement"):
        tp.evaluate({"Version": "2012-10-17"}, PROVIDER, context())


@pytest.mark.parametrize(("condition", "unconstrained"), [
    (None, True),
    ({"StringEquals": {f"{KEY}:aud": AUD}}, True),
    ({"StringLike": {f"{KEY}:aud": AUD, f"{KEY}:sub": "*"}}, True),  # a wildcard pins nothing
    ({"StringEquals": {f"{KEY}:aud": AUD, f"{KEY}:sub": SUB}}, False),
    ({"StringEquals": {f"{KEY}:aud": AUD, f"{KEY}:oid": SUB}}, False),
    ({"StringLike": {f"{KEY}:sub": "a2000000-*"}}, False),
])
def test_subject_unconstrained(condition, unconstrained):
    assert tp.subject_unconstrained(policy(condition), PROVIDER, KEY) is unconstrained


def test_subject_unconstrained_ignores_other_providers_and_denies():
    other = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
    assert not tp.subject_unconstrained(policy(None, principal=other), PROVIDER, KEY)
    assert not tp.subject_unconstrained(policy(None, effect="Deny"), PROVIDER, KEY)
