"""The host's keys and auth levels: a master key, a default host key, a default key per function.

Copied from the host's `AuthenticationLevelHandler` and secret manager: the key is the
`x-functions-key` header if present, else the `code` query parameter (first value); the
master key grants admin level; a host key grants function level for every function; a
function key grants function level for its own function only. Anonymous functions need no
key; function-level functions accept a function-level or admin key; admin-level functions
(and the admin API) accept only the master key.

Keys live in `.devstack/env`: DEVSTACK_MASTER_KEY, DEVSTACK_HOST_KEY (DEVSTACK_FUNCTION_KEY is
the same host key under its older name) and DEVSTACK_FUNCTION_KEY_<NAME>, which serve adds
for each function that has none yet, as the host creates a function's keys on first start.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MASTER = "DEVSTACK_MASTER_KEY"
HOST = "DEVSTACK_HOST_KEY"
HOST_ALIAS = "DEVSTACK_FUNCTION_KEY"
LEVEL_RANK = {"anonymous": 0, "function": 1, "admin": 2}


def function_key_setting(function_name: str) -> str:
    """The `.devstack/env` name of a function's default key: DEVSTACK_FUNCTION_KEY_<NAME>."""
    return f"{HOST_ALIAS}_{re.sub(r'[^A-Z0-9]', '_', function_name.upper())}"


def new_key() -> str:
    return secrets.token_urlsafe(32)


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class HostKeys:
    master: str
    host: str
    functions: Mapping[str, str]  # lower-cased function name -> its default key

    def level(self, presented: str | None, function: str | None) -> str:
        """The auth level a presented key grants for `function` (the secret manager's lookup)."""
        if not presented:
            return "anonymous"
        if _equal(presented, self.master):
            return "admin"
        if _equal(presented, self.host):
            return "function"
        own = self.functions.get((function or "").lower())
        return "function" if own is not None and _equal(presented, own) else "anonymous"

    def allows(self, required: str, presented: str | None, function: str | None) -> bool:
        return LEVEL_RANK[self.level(presented, function)] >= LEVEL_RANK[required]


def load(values: Mapping[str, str], function_names: Iterable[str]) -> tuple[HostKeys, dict[str, str]]:
    """The keys from `.devstack/env` values, and the settings to add for keys that were missing."""
    added: dict[str, str] = {}
    master = values.get(MASTER) or added.setdefault(MASTER, new_key())
    host = values.get(HOST) or values.get(HOST_ALIAS) or new_key()
    for name in (HOST, HOST_ALIAS):
        if not values.get(name):
            added[name] = host
    per_function: dict[str, str] = {}
    owners: dict[str, str] = {}
    for name in function_names:
        setting = function_key_setting(name)
        if owners.setdefault(setting, name) != name:
            raise ValueError(f"functions '{owners[setting]}' and '{name}' would share the key setting {setting}")
        per_function[name.lower()] = values.get(setting) or added.setdefault(setting, new_key())
    return HostKeys(master, host, per_function), added


def presented_key(headers: Mapping[str, str], first_code: str | None) -> str | None:
    """The `x-functions-key` header (it takes precedence), else the first `code` query value."""
    header = headers.get("x-functions-key")
    return header if header is not None else first_code
