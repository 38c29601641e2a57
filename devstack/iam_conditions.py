"""The local STS's judge of a role trust policy for AssumeRoleWithWebIdentity, written from AWS's docs.

The doctor (crosscloud) has its own evaluator; the emulator must not borrow it, or a bug there
would pass on both sides. Everything here follows the IAM User Guide:

- "Condition operators": String{Equals,NotEquals,EqualsIgnoreCase,NotEqualsIgnoreCase,Like,NotLike}
  (`*` and `?` wildcards in *Like only, case-sensitive), `...IfExists`, `Null`. A key absent from
  the request context makes a condition false, except a negated operator (true), `...IfExists`
  (true) and `Null` (tests presence).
- "Conditions with multiple context keys or values": operators and keys are ANDed, the values
  of one key are ORed (NORed by a negated operator).
- "Single-valued vs. multivalued context keys": `ForAllValues:` is true when every request value
  matches, and when the key is absent or empty; `ForAnyValue:` when one does, false when absent.
  A multivalued key needs a set operator: a plain operator does not match it.
- "Policy evaluation logic": an explicit Deny wins; without a matching Allow the answer is deny.
- "Available keys for AWS web identity federation": `<provider>:aud`, `:sub`, `:amr`; context key
  names are case-insensitive. No other claim (Entra's `oid`, `tid`, ...) becomes a key.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

WEB_IDENTITY_ACTION = "sts:AssumeRoleWithWebIdentity"
WEB_IDENTITY_KEYS = ("aud", "sub", "amr")

Value = str | tuple[str, ...]  # a single-valued key, or a multivalued one (a JSON array claim)


class Decision(enum.Enum):
    ALLOW = "allow"
    EXPLICIT_DENY = "explicit deny"
    IMPLICIT_DENY = "implicit deny (no Allow statement applies)"


class UnsupportedCondition(ValueError):
    """An operator this emulator does not implement: refusing beats guessing."""


def oidc_provider_name(issuer: str) -> str:
    """IAM names an OIDC provider by its issuer URL without the scheme (the ARN's resource part)."""
    return issuer.removeprefix("https://")


class RequestContext:
    """The condition keys of one request; IAM compares key names case-insensitively."""

    def __init__(self, keys: Mapping[str, Value]):
        self._keys = {name.lower(): value for name, value in keys.items()}

    def get(self, name: str) -> Value | None:
        return self._keys.get(name.lower())


def web_identity_context(issuer: str, claims: Mapping[str, Any]) -> RequestContext:
    """The keys STS sets from a web identity token; a claim that is an array is a multivalued key."""
    provider = oidc_provider_name(issuer)
    keys: dict[str, Value] = {}
    for claim in WEB_IDENTITY_KEYS:
        if claims.get(claim) is None:
            continue
        value = claims[claim]
        keys[f"{provider}:{claim}"] = tuple(map(str, value)) if isinstance(value, list) else str(value)
    return RequestContext(keys)


@lru_cache(maxsize=256)
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """IAM wildcards: `*` any run of characters, `?` one character; nothing else is special."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _like(actual: str, pattern: str) -> bool:
    return _glob(pattern, False).fullmatch(actual) is not None


# base operator -> (test of one request value against one policy value, negated)
_STRING_OPERATORS: dict[str, tuple[Callable[[str, str], bool], bool]] = {
    "StringEquals": (str.__eq__, False),
    "StringNotEquals": (str.__eq__, True),
    "StringEqualsIgnoreCase": (lambda a, p: a.casefold() == p.casefold(), False),
    "StringNotEqualsIgnoreCase": (lambda a, p: a.casefold() == p.casefold(), True),
    "StringLike": (_like, False),
    "StringNotLike": (_like, True),
}


@dataclass(frozen=True)
class Operator:
    """One parsed condition operator, e.g. `ForAnyValue:StringLikeIfExists`."""

    set_operator: str | None  # "ForAnyValue" | "ForAllValues" | None
    base: str
    if_exists: bool

    @classmethod
    def parse(cls, text: str) -> Operator:
        set_operator, _, base = text.rpartition(":")
        if set_operator not in ("", "ForAnyValue", "ForAllValues"):
            raise UnsupportedCondition(f"unknown set operator in {text!r}")
        if_exists = base.endswith("IfExists") and base != "IfExists"
        base = base.removesuffix("IfExists") if if_exists else base
        if base != "Null" and base not in _STRING_OPERATORS:
            raise UnsupportedCondition(f"condition operator {text!r} is not implemented by devstack")
        return cls(set_operator or None, base, if_exists)

    def holds(self, policy_values: list[str], actual: Value | None) -> bool:
        """Does the request's value for one key satisfy this operator with these policy values?"""
        if self.base == "Null":  # "true": the key must be absent; "false": present
            return any((v.lower() == "true") == (actual is None) for v in policy_values)
        test, negated = _STRING_OPERATORS[self.base]

        def satisfied(value: str) -> bool:
            return any(test(value, p) for p in policy_values) != negated

        if actual is None:
            if self.if_exists or self.set_operator == "ForAllValues":
                return True
            return negated and self.set_operator is None
        if self.set_operator is None:
            return isinstance(actual, str) and satisfied(actual)
        members = (actual,) if isinstance(actual, str) else actual
        if self.set_operator == "ForAllValues":
            return all(satisfied(m) for m in members)
        return any(satisfied(m) for m in members)


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _conditions_hold(block: Mapping[str, Any], context: RequestContext) -> bool:
    for operator_text, keys in block.items():
        operator = Operator.parse(operator_text)
        for key, values in keys.items():
            policy_values = [json.dumps(v) if isinstance(v, bool) else str(v) for v in _listed(values)]
            if not operator.holds(policy_values, context.get(key)):
                return False
    return True


def _names_action(statement: Mapping[str, Any], action: str) -> bool:
    """`Action` lists the action (wildcards allowed, case-insensitive), or `NotAction` leaves it out."""
    if "Action" in statement:
        return any(_glob(str(p), True).fullmatch(action) for p in _listed(statement["Action"]))
    if "NotAction" in statement:
        return not any(_glob(str(p), True).fullmatch(action) for p in _listed(statement["NotAction"]))
    return False


def _names_principal(statement: Mapping[str, Any], federated: str) -> bool:
    principal = statement.get("Principal")
    if principal == "*":
        return True
    return isinstance(principal, Mapping) and federated in _listed(principal.get("Federated"))


def decide(policy: str | Mapping[str, Any], federated_principal: str, context: RequestContext,
           action: str = WEB_IDENTITY_ACTION) -> Decision:
    """AWS's verdict on a trust policy for one request: explicit Deny > Allow > implicit deny."""
    document = json.loads(policy) if isinstance(policy, str) else policy
    statements = _listed(document.get("Statement"))
    if not statements:
        raise ValueError("the trust policy has no Statement")
    allowed = False
    for statement in statements:
        if not (_names_action(statement, action) and _names_principal(statement, federated_principal)):
            continue
        if not _conditions_hold(statement.get("Condition") or {}, context):
            continue
        if statement.get("Effect") == "Deny":
            return Decision.EXPLICIT_DENY
        allowed = allowed or statement.get("Effect") == "Allow"
    return Decision.ALLOW if allowed else Decision.IMPLICIT_DENY
