"""Static invariants of infra/ (Terraform) and the IAM policy templates it shares with devstack.

Terraform cannot run here, so the HCL is parsed with python-hcl2 and the templates are
rendered the way devstack renders them (string.Template, `${var}`), which for plain
interpolation is what Terraform's templatefile() does. Every checker is a pure function
returning a list of problems; each is run on the real files (expecting none) and on a
small bad example (expecting the problem), so none of these tests can pass vacuously.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from string import Template
from typing import Any

import hcl2
import pytest
from hcl2 import SerializationOptions

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
POLICIES = INFRA / "policies"
HCL_OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False)

TENANT = "7f5c0a3e-1d2b-4c6a-9e8f-0a1b2c3d4e5f"
SAMPLE_VALUES = {
    "provider_arn": f"arn:aws:iam::123456789012:oidc-provider/sts.windows.net/{TENANT}/",
    "provider_key": f"sts.windows.net/{TENANT}/",
    "audience": f"api://{TENANT}/crosscloud",
    "subjects_json": json.dumps(["a2000000-0000-4000-8000-000000000002"]),
    "bucket": "crosscloud-data",
    "prefix": "backup/",
}
TENANT_EXPR = "${data.azuread_client_config.current.tenant_id}"
SPEC_APP_SETTINGS = {
    "AZURE_CLIENT_ID", "AZURE_STORAGE_CONTAINER_URL", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_AUDIENCE",
    "AWS_REGION", "S3_BUCKET", "BACKUP_SCHEDULE", "BACKUP_S3_BUCKET", "BACKUP_S3_PREFIX",
    "AWS_BACKUP_ROLE_ARN",
}
EXPECTED_MAJORS = {"azurerm": ("4",), "azuread": ("3",), "aws": ("5", "6")}


# --- loading --------------------------------------------------------------------------

class Config:
    """The blocks of one or more .tf files, indexed the way the checkers need them."""

    def __init__(self, texts: list[str]):
        self.resources: dict[tuple[str, str], dict[str, Any]] = {}
        self.data: dict[tuple[str, str], dict[str, Any]] = {}
        self.locals: dict[str, Any] = {}
        self.terraform: list[dict[str, Any]] = []
        self.text = "\n".join(texts)
        for text in texts:
            doc = hcl2.loads(text, serialization_options=HCL_OPTIONS)
            for kind, target in (("resource", self.resources), ("data", self.data)):
                for block in doc.get(kind, []):
                    for rtype, named in block.items():
                        for name, body in named.items():
                            target[(rtype, name)] = body
            for block in doc.get("locals", []):
                self.locals.update({k: v for k, v in block.items() if k != "__comments__"})
            self.terraform.extend(doc.get("terraform", []))

    @classmethod
    def from_dir(cls, path: Path) -> Config:
        return cls([p.read_text() for p in sorted(path.glob("*.tf"))])

    @classmethod
    def from_text(cls, text: str) -> Config:
        return cls([text])

    def of_type(self, rtype: str) -> dict[str, dict[str, Any]]:
        return {name: body for (t, name), body in self.resources.items() if t == rtype}

    def resolve(self, value: Any) -> Any:
        """Inline `${local.x}` references to string locals (recursively), leave the rest."""
        if not isinstance(value, str):
            return value
        for _ in range(10):
            def local(m: re.Match[str]) -> str:
                target = self.locals.get(m.group(1))
                return target if isinstance(target, str) else m.group(0)
            new = re.sub(r"\$\{local\.(\w+)\}", local, value)
            if new == value:
                break
            value = new
        return value


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _block(body: dict[str, Any], name: str) -> dict[str, Any]:
    blocks = _list(body.get(name))
    return blocks[0] if blocks else {}


@pytest.fixture(scope="module")
def config() -> Config:
    return Config.from_dir(INFRA)


def render(name: str, **overrides: str) -> dict[str, Any]:
    text = (POLICIES / f"{name}.json.tpl").read_text()
    return json.loads(Template(text).substitute({**SAMPLE_VALUES, **overrides}))


# --- IAM policy checkers --------------------------------------------------------------

WRITE_ACTION = re.compile(r"^s3:(Put|Delete|Abort|Replicate|Restore|Create)", re.IGNORECASE)
OBJECT_ARN = re.compile(r"^arn:aws[a-z-]*:s3:::([^/]+)/(.*)$")


def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return _list(policy.get("Statement"))


def trust_policy_problems(policy: dict[str, Any]) -> list[str]:
    """Every web-identity statement must pin the audience and the subject with StringEquals."""
    problems = []
    web_identity = 0
    for stmt in _statements(policy):
        if stmt.get("Effect") != "Allow":
            continue
        actions = _list(stmt.get("Action"))
        if stmt.get("Principal") == "*" or any(a in ("*", "sts:*") for a in actions):
            problems.append(f"{stmt.get('Sid')}: wildcard principal or action in a trust policy")
        if not any(a == "sts:AssumeRoleWithWebIdentity" for a in actions):
            continue
        web_identity += 1
        principal = stmt.get("Principal")
        federated = _list(principal.get("Federated")) if isinstance(principal, dict) else []
        if not federated or any("*" in f for f in federated):
            problems.append(f"{stmt.get('Sid')}: no specific Federated principal")
        equals = (stmt.get("Condition") or {}).get("StringEquals") or {}
        for claim in ("aud", "sub"):
            keys = [k for k in equals if k.endswith(f":{claim}")]
            values = [v for k in keys for v in _list(equals[k])]
            if not keys or not values:
                problems.append(f"{stmt.get('Sid')}: no StringEquals condition on {claim}")
            elif any(not isinstance(v, str) or not v or "*" in v or "?" in v for v in values):
                problems.append(f"{stmt.get('Sid')}: {claim} condition is empty or has wildcards")
    if web_identity == 0:
        problems.append("no sts:AssumeRoleWithWebIdentity statement")
    return problems


def permission_policy_problems(policy: dict[str, Any], write_prefix: str | None) -> list[str]:
    """No wildcard actions or resources; writes only on objects under `write_prefix`."""
    problems = []
    for stmt in _statements(policy):
        sid = stmt.get("Sid", "?")
        if stmt.get("Effect") != "Allow":
            continue
        if "NotAction" in stmt or "NotResource" in stmt:
            problems.append(f"{sid}: NotAction/NotResource in an Allow statement")
        actions = [str(a) for a in _list(stmt.get("Action"))]
        resources = [str(r) for r in _list(stmt.get("Resource"))]
        for action in actions:
            if "*" in action:
                problems.append(f"{sid}: wildcard action {action!r}")
        if "*" in resources:
            problems.append(f"{sid}: Resource '*'")
        writes = [a for a in actions if WRITE_ACTION.match(a)]
        if not writes:
            continue
        for resource in resources:
            match = OBJECT_ARN.match(resource)
            if write_prefix is None:
                problems.append(f"{sid}: write action {writes} in a read-only policy")
            elif not match:
                problems.append(f"{sid}: write action {writes} on a non-object resource {resource!r}")
            elif not write_prefix or not match.group(2).startswith(write_prefix):
                problems.append(f"{sid}: write action {writes} outside the prefix {write_prefix!r}: "
                                f"{resource!r}")
    return problems


def template_problems(text: str) -> list[str]:
    """Constructs on which Terraform's templatefile and Python's string.Template disagree."""
    problems = []
    if "%{" in text:
        problems.append("template directive %{...} (Terraform only)")
    for match in re.finditer(r"\$", text):
        if not re.match(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", text[match.start():]):
            problems.append(f"'$' not followed by ${{identifier}} at offset {match.start()}")
    return problems


def template_identifiers(text: str) -> set[str]:
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text))


def templatefile_calls(text: str) -> list[tuple[str, set[str]]]:
    """(template file name, keys passed) of every templatefile() call in HCL source."""
    calls = []
    for match in re.finditer(r"templatefile\(\s*\"[^\"]*/([\w.-]+\.tpl)\"\s*,\s*\{(.*?)\}\s*\)", text, re.S):
        keys = set(re.findall(r"(?:^|[{,\n])\s*(\w+)\s*=(?!=)", match.group(2)))
        calls.append((match.group(1), keys))
    return calls


# --- Terraform checkers ---------------------------------------------------------------

def storage_account_problems(cfg: Config) -> list[str]:
    problems = []
    accounts = cfg.of_type("azurerm_storage_account")
    if not accounts:
        problems.append("no azurerm_storage_account")
    for name, body in accounts.items():
        if body.get("shared_access_key_enabled") is not False:
            problems.append(f"{name}: shared_access_key_enabled is not false")
        if body.get("min_tls_version") != "TLS1_2":
            problems.append(f"{name}: min_tls_version is not TLS1_2")
        if body.get("allow_nested_items_to_be_public") is not False:
            problems.append(f"{name}: allow_nested_items_to_be_public is not false")
    for name, body in cfg.of_type("azurerm_storage_container").items():
        if body.get("container_access_type", "private") != "private":
            problems.append(f"container {name} is not private")
    return problems


def _refs(value: Any, rtype: str) -> set[str]:
    return set(re.findall(rf"\b{rtype}\.(\w+)", json.dumps(value)))


def role_scope_problems(cfg: Config) -> list[str]:
    """Reader on the container only; no write-capable role anywhere near the data."""
    problems = []
    assignments = cfg.of_type("azurerm_role_assignment")
    readers = {n: b for n, b in assignments.items()
               if b.get("role_definition_name") == "Storage Blob Data Reader"}
    if not readers:
        problems.append("no Storage Blob Data Reader assignment")
    data_containers: set[str] = set()
    for name, body in readers.items():
        scope = str(body.get("scope", ""))
        containers = _refs(scope, "azurerm_storage_container")
        if not containers or _refs(scope, "azurerm_storage_account") \
                or not re.search(r"azurerm_storage_container\.\w+\.(resource_manager_id|id)\}", scope):
            problems.append(f"{name}: Storage Blob Data Reader is not scoped to a container: {scope}")
        data_containers |= containers
    containers = cfg.of_type("azurerm_storage_container")
    data_accounts = set().union(*[_refs(containers.get(c, {}).get("storage_account_id"),
                                        "azurerm_storage_account") for c in data_containers])
    for name, body in assignments.items():
        role = str(body.get("role_definition_name", ""))
        if not re.search(r"Owner|Contributor", role):
            continue
        scope = body.get("scope")
        restore_writer = role == "Storage Blob Data Contributor" and not _refs(scope, "azurerm_storage_account") \
            and "var.enable_restore" in json.dumps(body.get("count"))
        if restore_writer and _refs(scope, "azurerm_storage_container") & data_containers:
            continue  # restore's opt-in write grant, on the container only
        if _refs(scope, "azurerm_storage_account") & data_accounts or \
                _refs(scope, "azurerm_storage_container") & data_containers:
            problems.append(f"{name}: {role} on the data account/container")
        if _refs(scope, "azurerm_resource_group") or "subscription" in json.dumps(scope):
            problems.append(f"{name}: {role} at resource-group/subscription scope")
    for name, body in assignments.items():
        if body.get("role_definition_name") == "Storage Blob Delegator" \
                and "var.download_links_enabled" not in json.dumps(body.get("count")):
            problems.append(f"{name}: Storage Blob Delegator not conditional on var.download_links_enabled")
    return problems


def entra_problems(cfg: Config) -> list[str]:
    problems = []
    apps = cfg.of_type("azuread_application")
    if not apps:
        problems.append("no azuread_application")
    for name, body in apps.items():
        version = _block(body, "api").get("requested_access_token_version")
        if version != 1:
            problems.append(f"{name}: requested_access_token_version is {version!r}, not 1")
        uris = [cfg.resolve(u) for u in _list(body.get("identifier_uris"))]
        if not uris:
            problems.append(f"{name}: no identifier_uris")
        for uri in uris:
            if not re.fullmatch(rf"api://{re.escape(TENANT_EXPR)}/[^/\s]\S*", uri):
                problems.append(f"{name}: identifier URI {uri!r} is not api://<tenant-id>/<name>")
        roles = _list(body.get("app_role"))
        if not any(_list(r.get("allowed_member_types")) == ["Application"] for r in roles):
            problems.append(f"{name}: no app role for Applications")
    sps = cfg.of_type("azuread_service_principal")
    if not sps or any(sp.get("app_role_assignment_required") is not True for sp in sps.values()):
        problems.append("service principal does not require app role assignment")
    assignments = cfg.of_type("azuread_app_role_assignment")
    if not any(_refs(a.get("principal_object_id"), "azurerm_user_assigned_identity")
               for a in assignments.values()):
        problems.append("app role not assigned to the user-assigned identity")
    return problems


def federation_problems(cfg: Config) -> list[str]:
    """Issuer, audience and subject agree across Entra ID, IAM and the app settings."""
    problems = []
    audience = cfg.resolve(cfg.locals.get("audience", ""))
    providers = cfg.of_type("aws_iam_openid_connect_provider")
    if len(providers) != 1:
        return [f"expected one aws_iam_openid_connect_provider, found {len(providers)}"]
    provider = next(iter(providers.values()))
    if cfg.resolve(provider.get("url")) != f"https://sts.windows.net/{TENANT_EXPR}/":
        problems.append(f"OIDC provider url {provider.get('url')!r} is not the v1 issuer")
    if [cfg.resolve(c) for c in _list(provider.get("client_id_list"))] != [audience]:
        problems.append("OIDC provider client_id_list is not exactly the app's identifier URI")
    for name, app in cfg.of_type("azuread_application").items():
        if [cfg.resolve(u) for u in _list(app.get("identifier_uris"))] != [audience]:
            problems.append(f"{name}: identifier_uris differ from the audience {audience!r}")
    settings = cfg.locals.get("app_settings") or {}
    missing = SPEC_APP_SETTINGS - set(settings)
    if missing:
        problems.append(f"app settings missing: {sorted(missing)}")
    if cfg.resolve(settings.get("AWS_WEB_IDENTITY_AUDIENCE")) != audience:
        problems.append("AWS_WEB_IDENTITY_AUDIENCE is not the app's identifier URI")
    if not _refs(settings.get("AZURE_CLIENT_ID"), "azurerm_user_assigned_identity") \
            or not str(settings.get("AZURE_CLIENT_ID")).endswith(".client_id}"):
        problems.append("AZURE_CLIENT_ID is not the user-assigned identity's client_id")
    if settings.get("AzureWebJobsStorage__credential") != "managedidentity" \
            or "AzureWebJobsStorage" in settings \
            or re.search(r"AccountKey|SharedAccessSignature|primary_access_key|connection_string",
                         json.dumps(settings)):
        problems.append("AzureWebJobsStorage is not identity-based, or a key is in the app settings")
    for file_name, keys in templatefile_calls(cfg.text):
        if file_name.startswith("trust-") and "subjects_json" in keys:
            call = re.search(r"subjects_json\s*=\s*jsonencode\(\[([^\]]*)\]\)", cfg.text)
            if not call or not re.fullmatch(r"\s*azurerm_user_assigned_identity\.\w+\.principal_id\s*",
                                            call.group(1)):
                problems.append("trust policy subjects are not the identity's principal_id")
    return problems


def provider_pin_problems(cfg: Config) -> list[str]:
    problems = []
    if not cfg.terraform:
        return ["no terraform block"]
    block = cfg.terraform[0]
    required = str(block.get("required_version", ""))
    match = re.search(r">=\s*1\.(\d+)", required)
    if not match or int(match.group(1)) < 6:
        problems.append(f"required_version {required!r} does not require >= 1.6")
    providers = _block(block, "required_providers")
    for name, majors in EXPECTED_MAJORS.items():
        spec = providers.get(name)
        if not isinstance(spec, dict):
            problems.append(f"provider {name} not declared")
            continue
        version = str(spec.get("version", ""))
        if not re.search(r"~>\s*(" + "|".join(majors) + r")\.", version):
            problems.append(f"provider {name} version {version!r} not pinned to ~> {'/'.join(majors)}.x")
    for name, spec in providers.items():
        if name.startswith("__"):  # hcl2's comment bookkeeping
            continue
        version = str(spec.get("version", "")) if isinstance(spec, dict) else ""
        if "~>" not in version and "<" not in version:
            problems.append(f"provider {name} has no upper version bound: {version!r}")
    return problems


BUCKET_RESOURCES = (
    "aws_s3_bucket_versioning", "aws_s3_bucket_server_side_encryption_configuration",
    "aws_s3_bucket_public_access_block", "aws_s3_bucket_ownership_controls",
    "aws_s3_bucket_lifecycle_configuration", "aws_s3_bucket_policy",
)


def bucket_problems(cfg: Config) -> list[str]:
    """Every bucket: versioned, encrypted, private, ACLs off, stale uploads aborted, TLS only."""
    problems = []
    buckets = set(cfg.of_type("aws_s3_bucket"))
    if not buckets:
        return ["no aws_s3_bucket"]
    for rtype in BUCKET_RESOURCES:
        covered: set[str] = set()
        for body in cfg.of_type(rtype).values():
            if "local.buckets" in json.dumps(body.get("for_each")):
                covered |= _refs(cfg.locals.get("buckets"), "aws_s3_bucket")
            covered |= _refs(body.get("bucket"), "aws_s3_bucket")
        if buckets - covered:
            problems.append(f"{rtype} missing for bucket(s) {sorted(buckets - covered)}")
    for body in cfg.of_type("aws_s3_bucket_versioning").values():
        if _block(body, "versioning_configuration").get("status") != "Enabled":
            problems.append("versioning not Enabled")
    for body in cfg.of_type("aws_s3_bucket_server_side_encryption_configuration").values():
        default = _block(_block(body, "rule"), "apply_server_side_encryption_by_default")
        if default.get("sse_algorithm") not in ("aws:kms", "AES256"):
            problems.append("no default encryption")
    for body in cfg.of_type("aws_s3_bucket_public_access_block").values():
        flags = ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
        if any(body.get(f) is not True for f in flags):
            problems.append("public access block incomplete")
    for body in cfg.of_type("aws_s3_bucket_ownership_controls").values():
        if _block(body, "rule").get("object_ownership") != "BucketOwnerEnforced":
            problems.append("object ownership is not BucketOwnerEnforced")
    for body in cfg.of_type("aws_s3_bucket_lifecycle_configuration").values():
        days = [_block(r, "abort_incomplete_multipart_upload").get("days_after_initiation")
                for r in _list(body.get("rule")) if r.get("status") == "Enabled"]
        if not any(isinstance(d, int) and d <= 7 for d in days):
            problems.append("no lifecycle rule aborting incomplete multipart uploads within 7 days")
    for body in cfg.of_type("aws_s3_bucket_policy").values():
        docs = _refs(body.get("policy"), "data.aws_iam_policy_document")
        statements = [s for d in docs for s in _list(cfg.data.get(("aws_iam_policy_document", d), {})
                                                       .get("statement"))]
        if not any(s.get("effect") == "Deny" and "s3:*" in _list(s.get("actions"))
                   and any(c.get("variable") == "aws:SecureTransport" and _list(c.get("values")) == ["false"]
                           for c in _list(s.get("condition")))
                   for s in statements):
            problems.append("bucket policy does not deny requests without TLS")
    return problems


def skip_comment_problems(text: str) -> list[str]:
    problems = []
    for match in re.finditer(r"checkov:skip=([^\s:]*)(?::(.*))?", text):
        check, reason = match.group(1), (match.group(2) or "").strip()
        if not re.fullmatch(r"CKV2?_[A-Z]+_\d+", check):
            problems.append(f"malformed skip {match.group(0)!r}")
        elif len(reason) < 20:
            problems.append(f"{check}: skip without a real justification ({reason!r})")
    return problems


# --- the policy templates -------------------------------------------------------------

TEMPLATES = sorted(p.name.removesuffix(".json.tpl") for p in POLICIES.glob("*.json.tpl"))


def test_all_three_templates_exist() -> None:
    assert {"trust-web-identity", "s3-read", "s3-backup"} <= set(TEMPLATES)


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_renders_to_an_iam_policy(name: str) -> None:
    policy = render(name)
    assert policy["Version"] == "2012-10-17"
    assert _statements(policy)


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_means_the_same_to_terraform_and_string_template(name: str) -> None:
    assert template_problems((POLICIES / f"{name}.json.tpl").read_text()) == []


def test_template_checker_flags_renderer_differences() -> None:
    assert template_problems('{"a": "%{ if x }y%{ endif }"}')
    assert template_problems('{"a": "$bucket"}')
    assert template_problems('{"a": "$${literal}"}')
    assert template_problems('{"a": "${bucket}"}') == []


def test_trust_policy_pins_audience_and_subject() -> None:
    policy = render("trust-web-identity")
    assert trust_policy_problems(policy) == []
    condition = _statements(policy)[0]["Condition"]["StringEquals"]
    assert condition[f"sts.windows.net/{TENANT}/:aud"] == SAMPLE_VALUES["audience"]
    assert condition[f"sts.windows.net/{TENANT}/:sub"] == json.loads(SAMPLE_VALUES["subjects_json"])


def test_trust_policy_takes_several_subjects() -> None:
    subjects = ["a1000000-0000-4000-8000-000000000001", "a2000000-0000-4000-8000-000000000002"]
    policy = render("trust-web-identity", subjects_json=json.dumps(subjects))
    assert _statements(policy)[0]["Condition"]["StringEquals"][f"sts.windows.net/{TENANT}/:sub"] == subjects


@pytest.mark.parametrize(("bad", "expected"), [
    ({"Effect": "Allow", "Principal": {"Federated": "arn:x"}, "Action": "sts:AssumeRoleWithWebIdentity",
      "Condition": {"StringEquals": {"p:aud": "api://x"}}}, "on sub"),
    ({"Effect": "Allow", "Principal": {"Federated": "arn:x"}, "Action": "sts:AssumeRoleWithWebIdentity",
      "Condition": {"StringLike": {"p:aud": "api://x", "p:sub": "*"}}}, "on aud"),
    ({"Effect": "Allow", "Principal": {"Federated": "arn:x"}, "Action": "sts:AssumeRoleWithWebIdentity",
      "Condition": {"StringEquals": {"p:aud": "api://x", "p:sub": ["*"]}}}, "wildcards"),
    ({"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRoleWithWebIdentity",
      "Condition": {"StringEquals": {"p:aud": "a", "p:sub": "b"}}}, "wildcard principal"),
])
def test_trust_checker_flags_loose_trust(bad: dict[str, Any], expected: str) -> None:
    problems = trust_policy_problems({"Statement": [bad]})
    assert any(expected in p for p in problems), problems


def test_read_policy_has_no_wildcards_and_no_writes() -> None:
    assert permission_policy_problems(render("s3-read"), write_prefix=None) == []


def _allow(action: str | list[str], resource: str) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


def test_backup_policy_writes_only_under_the_prefix() -> None:
    assert permission_policy_problems(render("s3-backup"), write_prefix="backup/") == []
    # A different prefix moves every write with it: nothing is hard-coded to backup/.
    moved = render("s3-backup", prefix="nightly/x/")
    assert permission_policy_problems(moved, write_prefix="nightly/x/") == []


def test_restore_policy_reads_only_backup_versions_under_the_prefix() -> None:
    policy = render("s3-restore", prefix="nightly/x/")
    assert permission_policy_problems(policy, write_prefix=None) == []  # no write action at all
    actions = {a for stmt in _statements(policy) for a in _list(stmt["Action"])}
    assert {"s3:ListBucketVersions", "s3:GetObjectVersion"} <= actions
    assert not any(a.startswith("s3:Delete") for a in actions)
    for stmt in _statements(policy):
        for resource in _list(stmt["Resource"]):
            match = OBJECT_ARN.match(resource)
            if match:
                assert match.group(2).startswith("nightly/x/"), resource
            else:  # listing the bucket: only under the prefix
                assert stmt["Condition"]["StringLike"]["s3:prefix"] == ["nightly/x/*"]


def restore_problems(cfg: Config) -> list[str]:
    """Restore's rights exist only with var.enable_restore, which is off by default."""
    problems = []
    variables = {name: body for block in hcl2.loads((INFRA / "variables.tf").read_text(),
                                                    serialization_options=HCL_OPTIONS).get("variable", [])
                 for name, body in block.items()}
    if variables.get("enable_restore", {}).get("default") is not False:
        problems.append("variable enable_restore must default to false")
    for (rtype, name), body in cfg.resources.items():
        text = json.dumps(body)
        grants = "s3-restore.json.tpl" in text or "aws_iam_role.restore" in text \
            or body.get("role_definition_name") == "Storage Blob Data Contributor" or (rtype, name) == \
            ("aws_iam_role", "restore")
        if grants and "var.enable_restore" not in json.dumps(body.get("count")):
            problems.append(f"{rtype}.{name}: a restore grant not conditional on var.enable_restore")
    return problems


def test_restore_rights_are_opt_in(config: Config) -> None:
    assert restore_problems(config) == []
    assert config.resources[("aws_iam_role", "restore")]
    assert config.resources[("azurerm_role_assignment", "data_contributor")]


def test_restore_checker_flags_unconditional_grants() -> None:
    bad = Config.from_text('''
resource "azurerm_role_assignment" "w" {
  scope                = azurerm_storage_container.data.resource_manager_id
  role_definition_name = "Storage Blob Data Contributor"
}''')
    assert any("w: a restore grant not conditional" in p for p in restore_problems(bad))


@pytest.mark.parametrize(("statement", "prefix", "expected"), [
    (_allow("s3:*", "arn:aws:s3:::b/backup/*"), "backup/", "wildcard action"),
    (_allow("*", "arn:aws:s3:::b"), None, "wildcard action"),
    (_allow("s3:GetObject", "*"), None, "Resource '*'"),
    (_allow("s3:PutObject", "arn:aws:s3:::b/*"), "backup/", "outside the prefix"),
    (_allow(["s3:DeleteObject"], "arn:aws:s3:::b/other/*"), "backup/", "outside the prefix"),
    (_allow("s3:AbortMultipartUpload", "arn:aws:s3:::b/*"), "", "outside the prefix"),
    (_allow("s3:PutBucketPolicy", "arn:aws:s3:::b"), "backup/", "non-object"),
    (_allow("s3:PutObject", "arn:aws:s3:::b/backup/*"), None, "read-only"),
    ({"Effect": "Allow", "NotAction": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}, None, "NotAction"),
])
def test_permission_checker_flags_overbroad_statements(statement: dict[str, Any], prefix: str | None,
                                                       expected: str) -> None:
    problems = permission_policy_problems({"Statement": [statement]}, write_prefix=prefix)
    assert any(expected in p for p in problems), problems


def test_templatefile_calls_pass_exactly_the_template_variables(config: Config) -> None:
    calls = templatefile_calls(config.text)
    assert {name for name, _ in calls} == {f"{t}.json.tpl" for t in TEMPLATES}
    for name, keys in calls:
        assert keys == template_identifiers((POLICIES / name).read_text()), name


def test_devstack_renders_the_templates_with_the_same_variables() -> None:
    source = ROOT / "devstack" / "provision.py"
    if not source.exists():
        pytest.skip("devstack/provision.py not present")
    calls = [node for node in ast.walk(ast.parse(source.read_text()))
             if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "render_policy"
             and node.args and isinstance(node.args[0], ast.Constant)]
    if not calls:
        pytest.skip("devstack no longer calls render_policy(name, **values)")
    for call in calls:
        name = f"{call.args[0].value}.json.tpl"
        assert {k.arg for k in call.keywords} == template_identifiers((POLICIES / name).read_text()), name


def test_templatefile_call_parser_reads_keys() -> None:
    text = ('x = templatefile("${path.module}/policies/s3-backup.json.tpl", {\n'
            '  bucket = a ? b : c\n  prefix = var.p\n})')
    assert templatefile_calls(text) == [("s3-backup.json.tpl", {"bucket", "prefix"})]


# --- the Terraform configuration ------------------------------------------------------

def test_infra_parses_and_has_the_expected_resources(config: Config) -> None:
    for rtype in ("azurerm_function_app_flex_consumption", "azurerm_user_assigned_identity",
                  "azurerm_application_insights", "azuread_application", "aws_iam_openid_connect_provider",
                  "aws_iam_role", "aws_s3_bucket"):
        assert config.of_type(rtype), rtype


def test_storage_accounts_disable_shared_keys(config: Config) -> None:
    assert storage_account_problems(config) == []


def test_storage_checker_flags_shared_keys() -> None:
    bad = Config.from_text('''
resource "azurerm_storage_account" "x" {
  shared_access_key_enabled       = true
  min_tls_version                 = "TLS1_2"
  allow_nested_items_to_be_public = false
}
resource "azurerm_storage_account" "y" {
  min_tls_version = "TLS1_0"
}''')
    problems = storage_account_problems(bad)
    assert any("x: shared_access_key_enabled" in p for p in problems)
    assert any("y: shared_access_key_enabled" in p for p in problems)  # unset = keys enabled
    assert any("y: min_tls_version" in p for p in problems)


def test_blob_reader_is_scoped_to_the_container(config: Config) -> None:
    assert role_scope_problems(config) == []


@pytest.mark.parametrize(("hcl", "expected"), [
    ('''resource "azurerm_role_assignment" "r" {
  scope                = azurerm_storage_account.data.id
  role_definition_name = "Storage Blob Data Reader"
}''', "not scoped to a container"),
    ('''resource "azurerm_storage_container" "c" { storage_account_id = azurerm_storage_account.data.id }
resource "azurerm_role_assignment" "r" {
  scope                = azurerm_storage_container.c.resource_manager_id
  role_definition_name = "Storage Blob Data Reader"
}
resource "azurerm_role_assignment" "w" {
  scope                = azurerm_storage_account.data.id
  role_definition_name = "Storage Blob Data Contributor"
}''', "on the data account"),
    ('''resource "azurerm_storage_container" "c" { storage_account_id = azurerm_storage_account.data.id }
resource "azurerm_role_assignment" "r" {
  scope                = azurerm_storage_container.c.resource_manager_id
  role_definition_name = "Storage Blob Data Reader"
}
resource "azurerm_role_assignment" "d" {
  scope                = azurerm_storage_account.data.id
  role_definition_name = "Storage Blob Delegator"
}''', "not conditional"),
])
def test_role_checker_flags_broad_scopes(hcl: str, expected: str) -> None:
    problems = role_scope_problems(Config.from_text(hcl))
    assert any(expected in p for p in problems), problems


def test_entra_app_issues_v1_tokens_for_a_tenant_scoped_uri(config: Config) -> None:
    assert entra_problems(config) == []


@pytest.mark.parametrize(("api", "uri", "expected"), [
    ("requested_access_token_version = 2", 'api://${data.azuread_client_config.current.tenant_id}/cc',
     "not 1"),
    ("", 'api://${data.azuread_client_config.current.tenant_id}/cc', "not 1"),
    ("requested_access_token_version = 1", "api://crosscloud", "not api://<tenant-id>/<name>"),
])
def test_entra_checker_flags_v2_tokens_and_bare_uris(api: str, uri: str, expected: str) -> None:
    bad = Config.from_text(f'''
resource "azuread_application" "a" {{
  identifier_uris = ["{uri}"]
  api {{
    {api}
  }}
  app_role {{
    allowed_member_types = ["Application"]
  }}
}}
resource "azuread_service_principal" "s" {{ app_role_assignment_required = true }}
resource "azuread_app_role_assignment" "x" {{
  principal_object_id = azurerm_user_assigned_identity.app.principal_id
}}''')
    problems = entra_problems(bad)
    assert any(expected in p for p in problems), problems


def test_entra_checker_requires_assignment() -> None:
    bad = Config.from_text('''
resource "azuread_application" "a" {
  identifier_uris = ["api://${data.azuread_client_config.current.tenant_id}/cc"]
  api {
    requested_access_token_version = 1
  }
  app_role {
    allowed_member_types = ["User"]
  }
}
resource "azuread_service_principal" "s" { app_role_assignment_required = false }''')
    problems = entra_problems(bad)
    assert any("no app role for Applications" in p for p in problems)
    assert any("require app role assignment" in p for p in problems)
    assert any("not assigned" in p for p in problems)


def test_issuer_audience_and_subject_agree_everywhere(config: Config) -> None:
    assert federation_problems(config) == []


def test_federation_checker_flags_mismatches() -> None:
    bad = Config.from_text('''
locals {
  audience = "api://${data.azuread_client_config.current.tenant_id}/cc"
  app_settings = {
    AWS_WEB_IDENTITY_AUDIENCE = "api://cc"
    AZURE_CLIENT_ID = azurerm_user_assigned_identity.app.principal_id
    AzureWebJobsStorage = azurerm_storage_account.host.primary_connection_string
  }
}
resource "aws_iam_openid_connect_provider" "p" {
  url            = "https://login.microsoftonline.com/${data.azuread_client_config.current.tenant_id}/v2.0"
  client_id_list = ["00000000-0000-0000-0000-000000000000"]
}''')
    problems = federation_problems(bad)
    for expected in ("v1 issuer", "client_id_list", "app settings missing", "AWS_WEB_IDENTITY_AUDIENCE",
                     "AZURE_CLIENT_ID", "AzureWebJobsStorage"):
        assert any(expected in p for p in problems), (expected, problems)


def test_providers_are_pinned(config: Config) -> None:
    assert provider_pin_problems(config) == []


def test_provider_checker_flags_unpinned_providers() -> None:
    bad = Config.from_text('''
terraform {
  required_version = ">= 1.0"
  required_providers {
    azurerm = { source = "hashicorp/azurerm", version = ">= 3.0" }
    azuread = { source = "hashicorp/azuread" }
    aws     = { source = "hashicorp/aws", version = "~> 4.0" }
    random  = { source = "hashicorp/random", version = ">= 3.0" }
  }
}''')
    problems = provider_pin_problems(bad)
    for expected in ("required_version", "azurerm version", "azuread version", "aws version",
                     "random has no upper version bound"):
        assert any(expected in p for p in problems), (expected, problems)


def test_every_bucket_gets_the_baseline(config: Config) -> None:
    assert bucket_problems(config) == []


def test_bucket_checker_flags_missing_controls() -> None:
    bad = Config.from_text('''
resource "aws_s3_bucket" "a" {}
resource "aws_s3_bucket_versioning" "a" {
  bucket = aws_s3_bucket.a.id
  versioning_configuration { status = "Suspended" }
}
resource "aws_s3_bucket_lifecycle_configuration" "a" {
  bucket = aws_s3_bucket.a.id
  rule {
    status = "Enabled"
    abort_incomplete_multipart_upload { days_after_initiation = 30 }
  }
}''')
    problems = bucket_problems(bad)
    for expected in ("aws_s3_bucket_public_access_block missing", "aws_s3_bucket_policy missing",
                     "versioning not Enabled", "within 7 days"):
        assert any(expected in p for p in problems), (expected, problems)


def test_checkov_skips_are_justified(config: Config) -> None:
    assert "checkov:skip=" in config.text
    assert skip_comment_problems(config.text) == []


def test_skip_checker_flags_bare_skips() -> None:
    assert skip_comment_problems("#checkov:skip=CKV_AWS_18")
    assert skip_comment_problems("#checkov:skip=CKV_AWS_18:todo")
    assert skip_comment_problems("#checkov:skip=AWS_18:a perfectly long justification here")
    good = "#checkov:skip=CKV2_AZURE_1:customer keys are not needed for this data"
    assert skip_comment_problems(good) == []


# --- backup fan-out queue -------------------------------------------------------------

QUEUE_ROLES = {"Storage Queue Data Reader", "Storage Queue Data Message Processor", "Storage Queue Data Message Sender"}


def queue_problems(cfg: Config) -> list[str]:
    """The fan-out queue and its poison queue on the host account; message-level roles on the
    queues only; the identity-based connection the queue trigger names."""
    problems = []
    data_accounts = set().union(*[
        _refs(cfg.of_type("azurerm_storage_container").get(c, {}).get("storage_account_id"), "azurerm_storage_account")
        for body in cfg.of_type("azurerm_role_assignment").values()
        if body.get("role_definition_name") == "Storage Blob Data Reader"
        for c in _refs(body.get("scope"), "azurerm_storage_container")])
    queues = cfg.of_type("azurerm_storage_queue")
    if not queues:
        problems.append("no azurerm_storage_queue")
    for name, body in queues.items():
        if _refs(body.get("storage_account_id"), "azurerm_storage_account") & data_accounts:
            problems.append(f"{name}: queue on the data account")
    if "-poison" not in json.dumps(cfg.locals.get("shard_queues")):
        problems.append("no <queue>-poison queue is created")
    granted: set[str] = set()
    for name, body in cfg.of_type("azurerm_role_assignment").items():
        text = json.dumps(body) + (json.dumps(cfg.locals.get("queue_roles")) if "each.value.role" in json.dumps(body)
                                   else "")
        roles = set(re.findall(r"Storage Queue Data [A-Za-z ]*[A-Za-z]", text))
        if not roles:
            continue
        granted |= roles
        if roles - QUEUE_ROLES:
            problems.append(f"{name}: {sorted(roles - QUEUE_ROLES)} is more than message-level access")
        if not _refs(body.get("scope"), "azurerm_storage_queue") or _refs(body.get("scope"), "azurerm_storage_account"):
            problems.append(f"{name}: queue roles not scoped to the queues: {body.get('scope')}")
    for role in ("Storage Queue Data Message Processor", "Storage Queue Data Message Sender"):
        if role not in granted:
            problems.append(f"{role} is not granted")
    settings = cfg.locals.get("app_settings") or {}
    uri = str(settings.get("CROSSCLOUD_QUEUE__queueServiceUri"))
    if not uri.endswith(".primary_queue_endpoint}") or _refs(uri, "azurerm_storage_account") & data_accounts:
        problems.append("CROSSCLOUD_QUEUE__queueServiceUri is not the host account's queue endpoint")
    if settings.get("CROSSCLOUD_QUEUE__credential") != "managedidentity" or "CROSSCLOUD_QUEUE" in settings:
        problems.append("CROSSCLOUD_QUEUE is not an identity-based connection")
    if not str(settings.get("CROSSCLOUD_QUEUE__clientId")).endswith("azurerm_user_assigned_identity.app.client_id}"):
        problems.append("CROSSCLOUD_QUEUE__clientId is not the user-assigned identity's client_id")
    if not _refs(settings.get("BACKUP_QUEUE_NAME"), "azurerm_storage_queue"):
        problems.append("BACKUP_QUEUE_NAME is not the created queue's name")
    return problems


def test_fanout_queue_roles_and_connection(config: Config) -> None:
    assert queue_problems(config) == []


def test_queue_checker_flags_broad_roles_and_key_connections() -> None:
    bad = Config.from_text('''
resource "azurerm_storage_container" "data" { storage_account_id = azurerm_storage_account.data.id }
resource "azurerm_role_assignment" "r" {
  scope                = azurerm_storage_container.data.resource_manager_id
  role_definition_name = "Storage Blob Data Reader"
}
resource "azurerm_storage_queue" "q" { storage_account_id = azurerm_storage_account.data.id }
resource "azurerm_role_assignment" "q" {
  scope                = azurerm_storage_account.host.id
  role_definition_name = "Storage Queue Data Contributor"
}
locals {
  app_settings = {
    CROSSCLOUD_QUEUE = azurerm_storage_account.host.primary_connection_string
    BACKUP_QUEUE_NAME = "shards"
  }
}''')
    problems = queue_problems(bad)
    for expected in ("queue on the data account", "-poison", "more than message-level", "not scoped to the queues",
                     "Message Processor is not granted", "Message Sender is not granted", "queueServiceUri",
                     "not an identity-based connection", "clientId", "BACKUP_QUEUE_NAME"):
        assert any(expected in p for p in problems), (expected, problems)


def test_the_queue_triggers_use_the_connection_and_queue_infra_sets_up(config: Config) -> None:
    """The trigger bindings (as the azure-functions library describes them to the host) name
    the connection prefix and the queue setting that infra writes."""
    import subprocess
    import sys

    settings = config.locals.get("app_settings") or {}
    script = ("import json, function_app; print(json.dumps([json.loads(b) for f in function_app.app.get_functions() "
              "for b in f.get_raw_bindings()]))")  # a process of its own: the app indexes once per process
    out = subprocess.run([sys.executable, "-c", script], cwd=INFRA.parent, capture_output=True, check=True, text=True)
    bindings = json.loads(out.stdout.strip().splitlines()[-1])
    queue_triggers = {b["name"] + b["queueName"]: b for b in bindings if b["type"] == "queueTrigger"}
    assert {b["queueName"] for b in queue_triggers.values()} == {"%BACKUP_QUEUE_NAME%", "%BACKUP_QUEUE_NAME%-poison"}
    for binding in queue_triggers.values():
        assert f"{binding['connection']}__queueServiceUri" in settings
    assert "BACKUP_QUEUE_NAME" in settings
