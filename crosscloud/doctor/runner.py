"""The federation doctor: runs the checks in order and reports each with its fix.

AWS answers a broken Entra-to-IAM trust with a bare `AccessDenied`; the doctor walks the
chain (settings, identity, Azure, Entra token, claims, STS, trust policy, S3) and stops at
the first broken link of each branch, so the report names the one thing to fix. Shared by
`python -m crosscloud doctor` and `GET /api/diagnostics`.

The report is JSON-stable (`schema` below). It holds claims, IDs and ARNs, never a token,
credential or SAS: every string passes through `redact` as a last line of defence.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crosscloud.doctor import aws, azure, restore
from crosscloud.doctor.model import Context, Outcome, Skip
from crosscloud.errors import BadRequest, CrossCloudError
from crosscloud.settings import Settings

SCHEMA = "crosscloud.doctor/1"
STATUSES = ("pass", "warn", "fail", "skip")
log = logging.getLogger("crosscloud.doctor")

CHECKS: tuple[tuple[str, str, Callable[[Context], Outcome]], ...] = (
    ("settings", "app settings present and well-formed", azure.check_settings),
    ("identity", "managed identity in use", azure.check_identity),
    ("storage_token", "Entra token for Azure Storage", azure.check_storage_token),
    ("container_list", "Azure container listable", azure.check_container),
    ("aws_token", "Entra token for AWS_WEB_IDENTITY_AUDIENCE", azure.check_aws_token),
    ("token_claims", "token claims and what AWS must hold", azure.check_claims),
    ("sts_exchange", "AWS STS AssumeRoleWithWebIdentity", aws.check_sts),
    ("trust_policy", "role trust policy evaluated against the token", aws.check_trust_policy),
    ("s3_list", "S3 bucket listable", aws.check_s3_list),
    ("backup_write", "backup destination writable", aws.check_backup_write),
    ("restore_access", "restore possible with the current grants", restore.check_restore),
)

SECRET_PATTERNS = (
    re.compile(r"eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*"),  # a JWT (header starts with '{"')
    re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),  # AWS access key ID
    re.compile(r"(?i)\bsig=[^&\s\"']+"),  # SAS signature
)


def redact(value: Any) -> Any:
    """`value` with anything token-, key- or SAS-shaped replaced, recursively."""
    if isinstance(value, str):
        for pattern in SECRET_PATTERNS:
            value = pattern.sub("[redacted]", value)
        return value
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


@dataclass
class Check:
    name: str
    title: str
    status: str
    detail: str
    fix: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    duration_ms: int = 0

    def as_json(self) -> dict[str, Any]:
        return redact({"name": self.name, "title": self.title, "status": self.status, "detail": self.detail,
                       "fix": self.fix, "data": self.data, "duration_ms": self.duration_ms})


@dataclass
class Report:
    checks: list[Check]

    @property
    def ok(self) -> bool:
        """No check failed (warnings and skips caused by nothing failing are fine)."""
        return not any(c.status == "fail" for c in self.checks)

    def summary(self) -> dict[str, int]:
        return {s: sum(1 for c in self.checks if c.status == s) for s in STATUSES}

    def as_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "ok": self.ok, "summary": self.summary(),
                "checks": [c.as_json() for c in self.checks]}


def load_trust_policy(path: str | Path) -> dict[str, Any]:
    """A trust policy file (policy JSON or `aws iam get-role` output); BadRequest naming the file."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise BadRequest(f"--trust-policy {path}: cannot read the file ({exc.strerror})",
                         code="invalid_trust_policy") from None
    try:
        return aws.policy_document(text)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"--trust-policy {path}: not an IAM trust policy ({exc})",
                         code="invalid_trust_policy") from None


def run(settings: Settings | None = None, *, env: Mapping[str, str] | None = None,
        trust_policy: dict[str, Any] | None = None, trust_policy_source: str | None = None) -> Report:
    """Run every check in order; a check never raises, it passes, warns, fails or is skipped."""
    env = os.environ if env is None else env
    ctx = Context(env=env, settings=settings or Settings(env), trust_policy=trust_policy,
                  trust_policy_source=trust_policy_source)
    checks = []
    for name, title, fn in CHECKS:
        started = time.monotonic()
        try:
            outcome = fn(ctx)
        except Skip as skip:
            ctx.skip_roots[name] = skip.root
            outcome = Outcome("skip", str(skip))
        except CrossCloudError as exc:
            outcome = Outcome("fail", exc.message, data={"code": exc.code})
        except Exception as exc:  # a check must not take the report down with it
            log.warning("doctor check %s raised %s", name, type(exc).__name__)
            outcome = Outcome("fail", f"unexpected {type(exc).__name__} while checking", "run again; if it "
                              "persists, report it with the output of `python -m crosscloud doctor --json`")
        ctx.statuses[name] = outcome.status
        checks.append(Check(name, title, outcome.status, outcome.detail, outcome.fix, outcome.data,
                            int((time.monotonic() - started) * 1000)))
    report = Report(checks)
    failed = [c.name for c in checks if c.status == "fail"]
    log.info("doctor: %s%s", report.summary(), f" (failed: {', '.join(failed)})" if failed else "")
    return report


MARK = {"pass": "PASS", "warn": "WARN", "fail": "FAIL", "skip": "SKIP"}


def render_text(report: Report) -> str:
    """The report for a terminal: one line per check, then its fix, claims and trust policy."""
    doc = report.as_json()
    width = max(len(c["name"]) for c in doc["checks"])
    indent = " " * (8 + width)
    lines = ["crosscloud doctor"]
    for check in doc["checks"]:
        lines.append(f"  {MARK[check['status']]}  {check['name']:<{width}}  {check['detail']}")
        if check["fix"] and check["status"] in ("fail", "warn"):
            lines.append(f"{indent}fix: {check['fix']}")
        claims = check["data"].get("claims")
        if claims and check["status"] in ("pass", "warn"):
            lines.append(f"{indent}claims: " + f"\n{indent}        ".join(f"{k} = {v}" for k, v in claims.items()))
        aws = check["data"].get("aws")
        if aws and check["status"] in ("pass", "warn"):
            policy = json.dumps(aws["trust_policy"], indent=2).replace("\n", "\n" + indent + "  ")
            lines.append(f"{indent}trust policy for this exact token:\n{indent}  {policy}")
    counts = doc["summary"]
    lines.append(f"{counts['pass']} passed, {counts['warn']} warnings, {counts['fail']} failed, "
                 f"{counts['skip']} skipped")
    return "\n".join(lines) + "\n"
