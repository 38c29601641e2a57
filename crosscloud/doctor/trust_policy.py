"""Offline evaluation of an IAM role trust policy against a web-identity token's claims.

AWS answers a failed trust check with a bare `AccessDenied`. Evaluating the same policy
locally lets the doctor name the exact condition that fails. The local AWS emulator has its
own, separately written judge (devstack/iam_conditions.py); tests/unit/test_trust_differential.py
holds both to AWS's documented verdicts.

Scope: the statement shapes used for OIDC federation — `Principal.Federated`,
`sts:AssumeRoleWithWebIdentity`, String* condition operators (optionally with
`ForAnyValue:` / `ForAllValues:` and `IfExists`) and `Null`, on the keys AWS sets for a web
identity: the provider's `aud`, `sub`, `amr` (key names compare case-insensitively).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ACTION = "sts:AssumeRoleWithWebIdentity"
CLAIM_KEYS = ("aud", "sub", "amr")  # AWS sets no key for other claims (Entra's oid, tid)


def provider_key(issuer: str) -> str:
    """IAM's name for an OIDC issuer: the URL without its scheme (`sts.windows.net/<tid>/`)."""
    return re.sub(r"^https://", "", issuer)


def context_from_claims(issuer: str, claims: Mapping[str, Any]) -> dict[str, list[str]]:
    """The condition keys STS sets for a token: `<provider>:aud`, `:sub`, `:amr`."""
    key = provider_key(issuer)
    context: dict[str, list[str]] = {}
    for claim in CLAIM_KEYS:
        value = claims.get(claim)
        if value is None:
            continue
        values = value if isinstance(value, list) else [value]
        context[f"{key}:{claim}"] = [str(v) for v in values]
    return context


@dataclass
class Verdict:
    allowed: bool
    reason: str
    failed_conditions: list[str] = field(default_factory=list)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _wildcard(pattern: str) -> str:
    """IAM wildcards: * and ? only; no character classes."""
    return re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")


def _matches_action(statement: Mapping[str, Any]) -> bool:
    actions = _as_list(statement.get("Action"))
    return any(re.fullmatch(_wildcard(str(a)), ACTION, flags=re.IGNORECASE) for a in actions)


def _matches_principal(statement: Mapping[str, Any], provider_arn: str) -> bool:
    principal = statement.get("Principal")
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        return False
    return provider_arn in _as_list(principal.get("Federated"))


def _string_test(base: str, expected: str, actual: str) -> bool:
    if base in ("StringEquals", "StringNotEquals"):
        return actual == expected
    if base in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
        return actual.lower() == expected.lower()
    if base in ("StringLike", "StringNotLike"):
        return re.fullmatch(_wildcard(expected), actual, flags=re.DOTALL) is not None
    raise ValueError(f"unsupported condition operator {base!r}")


def _lookup(context: Mapping[str, list[str]], key: str) -> list[str] | None:
    """IAM compares condition key names case-insensitively."""
    return next((v for k, v in context.items() if k.lower() == key.lower()), None)


def condition_holds(operator: str, key: str, expected: Any, context: Mapping[str, list[str]]) -> bool:
    """One `"Operator": {"key": expected}` entry, per IAM's rules for multi-valued keys."""
    qualifier = ""
    if ":" in operator:
        qualifier, operator = operator.split(":", 1)
    if_exists = operator.endswith("IfExists")
    base = operator[: -len("IfExists")] if if_exists else operator
    negated = "Not" in base
    expected_values = [str(v) for v in _as_list(expected)]
    actual_values = _lookup(context, key)
    if base == "Null":  # "true": the key must be absent, "false": present
        return any((e.lower() == "true") == (actual_values is None) for e in expected_values)
    if actual_values is None:  # ForAnyValue over no values is false, even negated
        return if_exists or qualifier == "ForAllValues" or (negated and qualifier != "ForAnyValue")

    def any_expected(actual: str) -> bool:
        return any(_string_test(base, e, actual) for e in expected_values)

    if qualifier == "ForAllValues":
        results = [any_expected(a) for a in actual_values]
        return all(not r for r in results) if negated else all(results)
    if qualifier == "ForAnyValue":
        results = [any_expected(a) for a in actual_values]
        return any(not r for r in results) if negated else any(results)
    # Single-valued operator: IAM compares the (first) value.
    hit = any_expected(actual_values[0])
    return not hit if negated else hit


def _failed_conditions(statement: Mapping[str, Any], context: Mapping[str, list[str]]) -> list[str]:
    failed = []
    for operator, entries in (statement.get("Condition") or {}).items():
        for key, expected in entries.items():
            if not condition_holds(operator, key, expected, context):
                actual = _lookup(context, key)
                failed.append(f"{operator} {key} expects {json.dumps(expected)}, token has "
                              f"{json.dumps(actual[0] if actual and len(actual) == 1 else actual)}")
    return failed


def load(policy: str | Mapping[str, Any]) -> dict[str, Any]:
    doc = json.loads(policy) if isinstance(policy, str) else dict(policy)
    if not isinstance(doc.get("Statement"), (list, dict)):
        raise ValueError("trust policy has no Statement")
    return doc


def _statements(doc: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    return _as_list(doc.get("Statement"))


def evaluate(policy: str | Mapping[str, Any], provider_arn: str,
             context: Mapping[str, list[str]]) -> Verdict:
    """Would STS let a token with this `context` assume the role? Explicit Deny wins."""
    doc = load(policy)
    relevant = [s for s in _statements(doc)
                if _matches_action(s) and _matches_principal(s, provider_arn)]
    for statement in relevant:
        if statement.get("Effect") == "Deny" and not _failed_conditions(statement, context):
            return Verdict(False, "an explicit Deny statement matches this token")
    allows = [s for s in relevant if s.get("Effect") == "Allow"]
    if not allows:
        return Verdict(False, f"no Allow statement for {ACTION} with Principal.Federated "
                              f"= {provider_arn}")
    failures: list[str] = []
    for statement in allows:
        failed = _failed_conditions(statement, context)
        if not failed:
            return Verdict(True, "an Allow statement matches and all its conditions hold")
        failures.extend(failed)
    return Verdict(False, "trust policy conditions not met", failures)


def subject_unconstrained(policy: str | Mapping[str, Any], provider_arn: str,
                          issuer_key: str) -> bool:
    """True when some Allow statement admits this provider without pinning `sub` (or `oid`).

    Such a role can be assumed by *any* identity the issuer vouches for with the right
    audience — for Entra, any app in the tenant that can get a token for it.
    """
    for statement in _statements(load(policy)):
        if statement.get("Effect") != "Allow" or not _matches_action(statement):
            continue
        if not _matches_principal(statement, provider_arn):
            continue
        keys = {key for entries in (statement.get("Condition") or {}).values() for key in entries}
        pinned = {f"{issuer_key}:sub", f"{issuer_key}:oid"}
        conditions = statement.get("Condition") or {}
        wildcard_only = all(
            str(v) == "*"
            for op, entries in conditions.items() if "Like" in op
            for k, vals in entries.items() if k in pinned for v in _as_list(vals)
        ) and not any(k in pinned for op, e in conditions.items() if "Like" not in op for k in e)
        if not (keys & pinned) or wildcard_only:
            return True
    return False
