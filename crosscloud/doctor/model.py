"""The doctor's check model: what a check returns (Outcome), why it could not run (Skip), and
what the checks learn along the chain (Context, in memory only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from azure.core.credentials import TokenCredential

from crosscloud.doctor import token_claims
from crosscloud.settings import Settings

PASSING = ("pass", "warn")


class Skip(Exception):
    """The check cannot run because something it needs is missing; the message says what.

    `root` is the first broken link (e.g. "aws_token failed"), carried down the chain so a
    check three steps later still names it.
    """

    def __init__(self, message: str, root: str | None = None):
        super().__init__(message)
        self.root = root or message


@dataclass
class Outcome:
    status: str  # pass | fail | warn | skip
    detail: str
    fix: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    """What the checks learn, in memory only. `token` and `aws_credentials` are secrets."""

    env: Mapping[str, str]
    settings: Settings
    trust_policy: dict[str, Any] | None = None
    trust_policy_source: str | None = None
    statuses: dict[str, str] = field(default_factory=dict)
    skip_roots: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    bad_settings: set[str] = field(default_factory=set)
    credential: TokenCredential | None = None
    who: str = "the managed identity"
    principal: str | None = None
    token: str | None = None
    claims: dict[str, Any] | None = None
    trust: token_claims.AwsTrust | None = None
    aws_credentials: dict[str, Any] | None = None
    sts_error: str | None = None

    def needs(self, *checks: str, settings: tuple[str, ...] = ()) -> None:
        for name in checks:
            status = self.statuses.get(name, "not run")
            if status == "skip":
                root = self.skip_roots.get(name, f"{name} was skipped")
                raise Skip(f"needs {name}, skipped because {root}", root)
            if status not in PASSING:
                raise Skip(f"needs {name}, which failed", f"{name} failed")
        bad = [s for s in settings if s in self.bad_settings]
        if bad:
            raise Skip(f"needs {', '.join(bad)}, which is missing or malformed (see settings)",
                       f"{', '.join(bad)} is missing or malformed")
