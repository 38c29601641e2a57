"""One table of (trust policy, token claims, AWS's verdict), judged by both trust evaluators.

The doctor (crosscloud.doctor.trust_policy) and the local STS (devstack.iam_conditions) are
written separately; each must give the verdict AWS documents for every row, so a bug in one
cannot hide behind the other. Refusals are half the table: an evaluator that admitted
everything, or refused everything, fails here.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crosscloud.doctor import trust_policy
from devstack import iam_conditions

TENANT = "7f5c0a3e-1d2b-4c6a-9e8f-0a1b2c3d4e5f"
ISSUER = f"https://sts.windows.net/{TENANT}/"
KEY = f"sts.windows.net/{TENANT}/"
PROVIDER = f"arn:aws:iam::123456789012:oidc-provider/{KEY}"
OTHER_PROVIDER = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
AUD = f"api://{TENANT}/crosscloud"
SUB = "a2000000-0000-4000-8000-000000000002"
OTHER = "a3000000-0000-4000-8000-000000000003"
AUD_OK = {f"{KEY}:aud": AUD}
PINNED = {"StringEquals": {f"{KEY}:aud": AUD, f"{KEY}:sub": SUB}}


def stmt(condition: dict | None = None, effect: str = "Allow", principal: Any = None,
         action: Any = "sts:AssumeRoleWithWebIdentity") -> dict:
    statement = {"Effect": effect, "Principal": {"Federated": PROVIDER} if principal is None else principal,
                 "Action": action}
    if condition is not None:
        statement["Condition"] = condition
    return statement


def doc(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def claims(sub: str | None = SUB, **extra: Any) -> dict[str, Any]:
    """An Entra v1 token's claims (oid and tid included, as Entra sends them)."""
    base = {"iss": ISSUER, "aud": AUD, "oid": SUB, "tid": TENANT, **extra}
    return base if sub is None else {**base, "sub": sub}


ALLOW, REFUSE = True, False

# (id, policy, claims, does AWS admit the token?)
CASES: list[tuple[str, Any, dict[str, Any], bool]] = [
    # StringEquals, several keys (AND), several values (OR)
    ("pinned-aud-and-sub", doc(stmt(PINNED)), claims(), ALLOW),
    ("wrong-aud", doc(stmt(PINNED)), claims(aud="api://some-other-app"), REFUSE),
    ("wrong-sub", doc(stmt(PINNED)), claims(OTHER), REFUSE),
    ("sub-is-one-of-several-values", doc(stmt({"StringEquals": {**AUD_OK, f"{KEY}:sub": [OTHER, SUB]}})),
     claims(), ALLOW),
    ("sub-in-none-of-several-values",
     doc(stmt({"StringEquals": {**AUD_OK, f"{KEY}:sub": [OTHER, "a1000000-0000-4000-8000-000000000001"]}})),
     claims(), REFUSE),
    ("operators-are-anded", doc(stmt({"StringEquals": AUD_OK, "StringLike": {f"{KEY}:sub": "a3*"}})),
     claims(), REFUSE),
    ("policy-as-json-text-single-statement", json.dumps({"Version": "2012-10-17", "Statement": stmt(PINNED)}),
     claims(), ALLOW),
    ("no-condition-admits-any-subject", doc(stmt()), claims(OTHER), ALLOW),
    ("second-allow-statement-admits", doc(stmt({"StringEquals": {f"{KEY}:sub": OTHER}}), stmt(PINNED)),
     claims(), ALLOW),
    # case and wildcards
    ("string-equals-is-case-sensitive", doc(stmt({"StringEquals": {f"{KEY}:sub": SUB.upper()}})), claims(),
     REFUSE),
    ("string-equals-has-no-wildcards", doc(stmt({"StringEquals": {f"{KEY}:sub": "*"}})), claims(), REFUSE),
    ("equals-ignore-case", doc(stmt({"StringEqualsIgnoreCase": {f"{KEY}:sub": SUB.upper()}})), claims(), ALLOW),
    ("like-star-prefix", doc(stmt({"StringEquals": AUD_OK, "StringLike": {f"{KEY}:sub": "a2000000-*"}})),
     claims(), ALLOW),
    ("like-star-prefix-other-subject",
     doc(stmt({"StringEquals": AUD_OK, "StringLike": {f"{KEY}:sub": "a2000000-*"}})), claims(OTHER), REFUSE),
    ("like-question-marks", doc(stmt({"StringLike": {f"{KEY}:sub": "a?000000-0000-4000-8000-00000000000?"}})),
     claims(), ALLOW),
    ("like-question-mark-is-exactly-one-char", doc(stmt({"StringLike": {f"{KEY}:sub": "a2000000-?"}})),
     claims(), REFUSE),
    ("like-is-case-sensitive", doc(stmt({"StringLike": {f"{KEY}:sub": "A2000000-*"}})), claims(), REFUSE),
    ("like-has-no-character-classes", doc(stmt({"StringLike": {f"{KEY}:sub": "a[2]000000-*"}})), claims(),
     REFUSE),
    ("like-matches-the-whole-value", doc(stmt({"StringLike": {f"{KEY}:sub": "0000-4000"}})), claims(), REFUSE),
    # negated operators: NOR over values; true when the key is absent
    ("not-equals-another", doc(stmt({"StringNotEquals": {f"{KEY}:sub": OTHER}})), claims(), ALLOW),
    ("not-equals-self", doc(stmt({"StringNotEquals": {f"{KEY}:sub": SUB}})), claims(), REFUSE),
    ("not-equals-is-nor-over-values", doc(stmt({"StringNotEquals": {f"{KEY}:sub": [OTHER, SUB]}})), claims(),
     REFUSE),
    ("not-like", doc(stmt({"StringNotLike": {f"{KEY}:sub": "a3*"}})), claims(), ALLOW),
    ("not-like-matching", doc(stmt({"StringNotLike": {f"{KEY}:sub": "a3*"}})), claims(OTHER), REFUSE),
    ("negated-on-missing-key-holds", doc(stmt({"StringEquals": AUD_OK, "StringNotEquals": {f"{KEY}:amr": "pwd"}})),
     claims(), ALLOW),
    # multivalued amr with set operators
    ("any-value-one-matches", doc(stmt({"ForAnyValue:StringEquals": {f"{KEY}:amr": "mfa"}})),
     claims(amr=["pwd", "mfa"]), ALLOW),
    ("any-value-none-matches", doc(stmt({"ForAnyValue:StringEquals": {f"{KEY}:amr": "mfa"}})),
     claims(amr=["pwd"]), REFUSE),
    ("any-value-key-absent", doc(stmt({"ForAnyValue:StringEquals": {f"{KEY}:amr": "mfa"}})), claims(), REFUSE),
    ("any-value-empty-set", doc(stmt({"ForAnyValue:StringEquals": {f"{KEY}:amr": "mfa"}})), claims(amr=[]),
     REFUSE),
    ("any-value-like", doc(stmt({"ForAnyValue:StringLike": {f"{KEY}:amr": "m*"}})), claims(amr=["pwd", "mfa"]),
     ALLOW),
    ("any-value-not-equals-one-differs", doc(stmt({"ForAnyValue:StringNotEquals": {f"{KEY}:amr": "pwd"}})),
     claims(amr=["pwd", "mfa"]), ALLOW),
    ("any-value-not-equals-none-differs", doc(stmt({"ForAnyValue:StringNotEquals": {f"{KEY}:amr": "pwd"}})),
     claims(amr=["pwd"]), REFUSE),
    ("any-value-not-equals-key-absent", doc(stmt({"ForAnyValue:StringNotEquals": {f"{KEY}:amr": "pwd"}})),
     claims(), REFUSE),
    ("all-values-match", doc(stmt({"ForAllValues:StringEquals": {f"{KEY}:amr": ["pwd", "mfa"]}})),
     claims(amr=["mfa", "pwd"]), ALLOW),
    ("all-values-one-unlisted", doc(stmt({"ForAllValues:StringEquals": {f"{KEY}:amr": ["pwd", "mfa"]}})),
     claims(amr=["pwd", "rsa"]), REFUSE),
    ("all-values-key-absent-is-vacuously-true",
     doc(stmt({"ForAllValues:StringEquals": {f"{KEY}:amr": ["pwd", "mfa"]}})), claims(), ALLOW),
    ("all-values-empty-set-is-true", doc(stmt({"ForAllValues:StringEquals": {f"{KEY}:amr": "mfa"}})),
     claims(amr=[]), ALLOW),
    ("all-values-not-equals", doc(stmt({"ForAllValues:StringNotEquals": {f"{KEY}:amr": "rsa"}})),
     claims(amr=["pwd", "mfa"]), ALLOW),
    ("all-values-not-equals-one-listed", doc(stmt({"ForAllValues:StringNotEquals": {f"{KEY}:amr": "rsa"}})),
     claims(amr=["pwd", "rsa"]), REFUSE),
    # missing keys, IfExists, Null
    ("plain-operator-on-missing-key", doc(stmt({"StringEquals": {**AUD_OK, f"{KEY}:amr": "mfa"}})), claims(),
     REFUSE),
    ("if-exists-on-missing-key", doc(stmt({"StringEquals": AUD_OK, "StringEqualsIfExists": {f"{KEY}:sub": OTHER}})),
     claims(None), ALLOW),
    ("if-exists-on-present-key", doc(stmt({"StringEquals": AUD_OK, "StringEqualsIfExists": {f"{KEY}:sub": OTHER}})),
     claims(), REFUSE),
    ("like-if-exists-present-matching", doc(stmt({"StringLikeIfExists": {f"{KEY}:sub": "a2*"}})), claims(),
     ALLOW),
    ("any-value-if-exists-key-absent", doc(stmt({"ForAnyValue:StringEqualsIfExists": {f"{KEY}:amr": "mfa"}})),
     claims(), ALLOW),
    ("null-true-key-absent", doc(stmt({"StringEquals": AUD_OK, "Null": {f"{KEY}:amr": "true"}})), claims(),
     ALLOW),
    ("null-true-key-present", doc(stmt({"StringEquals": AUD_OK, "Null": {f"{KEY}:amr": "true"}})),
     claims(amr=["pwd"]), REFUSE),
    ("null-false-key-present", doc(stmt({"Null": {f"{KEY}:sub": "false"}})), claims(), ALLOW),
    ("null-false-key-absent", doc(stmt({"Null": {f"{KEY}:sub": "false"}})), claims(None), REFUSE),
    # which claims become keys: aud, sub, amr only; key names are case-insensitive
    ("oid-is-not-a-web-identity-key", doc(stmt({"StringEquals": {**AUD_OK, f"{KEY}:oid": SUB}})), claims(),
     REFUSE),
    ("tid-is-not-a-web-identity-key", doc(stmt({"StringEquals": {**AUD_OK, f"{KEY}:tid": TENANT}})), claims(),
     REFUSE),
    ("key-names-are-case-insensitive", doc(stmt({"StringEquals": {f"{KEY.upper()}:AUD": AUD,
                                                                  f"{KEY.upper()}:Sub": SUB}})), claims(), ALLOW),
    ("another-providers-keys", doc(stmt({"StringEquals": {"token.actions.githubusercontent.com:sub": SUB}})),
     claims(), REFUSE),
    # explicit Deny wins; no Allow is a refusal
    ("deny-matching-subject-wins", doc(stmt(PINNED), stmt({"StringEquals": {f"{KEY}:sub": SUB}}, "Deny",
                                                          action="sts:*")), claims(), REFUSE),
    ("deny-for-another-subject", doc(stmt({"StringEquals": AUD_OK}),
                                     stmt({"StringEquals": {f"{KEY}:sub": OTHER}}, "Deny")), claims(), ALLOW),
    ("deny-for-another-subject-hits-it", doc(stmt({"StringEquals": AUD_OK}),
                                             stmt({"StringEquals": {f"{KEY}:sub": OTHER}}, "Deny")),
     claims(OTHER), REFUSE),
    ("deny-everyone", doc(stmt(PINNED), stmt(None, "Deny", principal="*")), claims(), REFUSE),
    ("deny-only", doc(stmt(None, "Deny")), claims(), REFUSE),
    ("deny-another-action-only", doc(stmt(PINNED), stmt(None, "Deny", action="sts:AssumeRole")), claims(), ALLOW),
    ("deny-another-provider-only", doc(stmt(PINNED), stmt(None, "Deny", principal={"Federated": OTHER_PROVIDER})),
     claims(), ALLOW),
    # principal
    ("another-provider", doc(stmt(None, principal={"Federated": OTHER_PROVIDER})), claims(), REFUSE),
    ("provider-among-several", doc(stmt(PINNED, principal={"Federated": [OTHER_PROVIDER, PROVIDER]})), claims(),
     ALLOW),
    ("aws-principal-is-not-federated", doc(stmt(None, principal={"AWS": "arn:aws:iam::123456789012:root"})),
     claims(), REFUSE),
    ("any-principal", doc(stmt(PINNED, principal="*")), claims(), ALLOW),
    # action
    ("assume-role-is-another-action", doc(stmt(PINNED, action="sts:AssumeRole")), claims(), REFUSE),
    ("saml-is-another-action", doc(stmt(PINNED, action="sts:AssumeRoleWithSAML")), claims(), REFUSE),
    ("sts-star", doc(stmt(PINNED, action="sts:*")), claims(), ALLOW),
    ("action-prefix-star", doc(stmt(PINNED, action="sts:AssumeRoleWith*")), claims(), ALLOW),
    ("action-question-mark", doc(stmt(PINNED, action="sts:AssumeRoleWith?ebIdentity")), claims(), ALLOW),
    ("action-is-case-insensitive", doc(stmt(PINNED, action="STS:assumerolewithwebidentity")), claims(), ALLOW),
    ("action-in-a-list", doc(stmt(PINNED, action=["sts:AssumeRole", "sts:AssumeRoleWithWebIdentity"])),
     claims(), ALLOW),
    ("action-has-no-character-classes", doc(stmt(PINNED, action="sts:AssumeRoleWith[W]ebIdentity")), claims(),
     REFUSE),
]


def _doctor(policy: Any, token: dict[str, Any]) -> bool:
    return trust_policy.evaluate(policy, PROVIDER, trust_policy.context_from_claims(ISSUER, token)).allowed


def _devstack(policy: Any, token: dict[str, Any]) -> bool:
    context = iam_conditions.web_identity_context(ISSUER, token)
    return iam_conditions.decide(policy, PROVIDER, context) is iam_conditions.Decision.ALLOW


EVALUATORS: dict[str, Callable[[Any, dict[str, Any]], bool]] = {"doctor": _doctor, "devstack": _devstack}


@pytest.mark.parametrize("evaluator", EVALUATORS)
@pytest.mark.parametrize(("policy", "token", "admitted"), [pytest.param(*case[1:], id=case[0]) for case in CASES])
def test_both_evaluators_give_awss_verdict(evaluator, policy, token, admitted):
    assert EVALUATORS[evaluator](policy, token) is admitted


def test_the_table_holds_refusals_and_admissions():
    verdicts = [case[3] for case in CASES]
    assert verdicts.count(REFUSE) >= 25
    assert verdicts.count(ALLOW) >= 25
    assert len({case[0] for case in CASES}) == len(CASES)


def test_devstack_imports_nothing_from_crosscloud():
    """The emulator copies AWS, never our code: no module under devstack/ imports crosscloud."""
    offenders = []
    for path in sorted((Path(__file__).resolve().parents[2] / "devstack").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                    "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
                names = [str(node.args[0].value)]
            offenders += [f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] == "crosscloud"]
    assert offenders == []
