"""AWS `credential_process` backed by the managed identity, with a per-user file cache.

The AWS CLI and SDKs run the process for every command and do not cache its output, so
without a cache every `aws ...` call would cost an Entra token and an STS call. botocore's
own pieces do the work: `AssumeRoleWithWebIdentityCredentialFetcher` reuses cached
credentials until 15 minutes before they expire, and `JSONFileCache` stores them (atomic
replace, files created 0600). We add a private directory (0700) and a cache key that names
the identity and audience as well as the role, so two identities never share credentials.

Output (stdout) is the protocol, and the one place credentials are printed:
`{"Version": 1, "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import botocore.session
from azure.core.credentials import TokenCredential
from botocore.credentials import AssumeRoleWithWebIdentityCredentialFetcher
from botocore.utils import JSONFileCache, parse_timestamp

from crosscloud.auth import identity
from crosscloud.auth.federation import AzureWebIdentityTokenLoader, FederationTarget, explaining, role_session_name
from crosscloud.doctor import entra_errors
from crosscloud.errors import CrossCloudError, IdentityError, SettingError
from crosscloud.settings import Settings

CACHE_ENV = "CROSSCLOUD_CACHE_DIR"
SYSTEM = "system"


class CacheError(CrossCloudError):
    code = "cache_error"
    status = 500


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """`$CROSSCLOUD_CACHE_DIR`, else `$XDG_CACHE_HOME/crosscloud/credential-process`, else ~/.cache/..."""
    env = os.environ if env is None else env
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV]).expanduser()
    base = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "crosscloud" / "credential-process"


def private_dir(path: Path) -> Path:
    """Create `path` 0700, or tighten it to 0700; refuse a directory another user owns."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise CacheError(f"credential cache directory {path} ({CACHE_ENV}) belongs to another user; "
                         "use a directory of your own")
    if stat.S_IMODE(info.st_mode) != 0o700:
        path.chmod(0o700)
    return path


class PrivateFileCache(JSONFileCache):
    """botocore's JSONFileCache in a private directory; an unreadable entry counts as a miss."""

    def __init__(self, directory: Path):
        super().__init__(working_dir=str(private_dir(directory)))

    def __contains__(self, cache_key: str) -> bool:
        try:
            self[cache_key]
        except KeyError:
            return False
        return True


class ScopedWebIdentityFetcher(AssumeRoleWithWebIdentityCredentialFetcher):
    """botocore's web-identity fetcher whose cache key also names identity, audience and STS endpoint.

    botocore hashes only the AssumeRole arguments (role, session name): two identities or two
    audiences for the same role would share one cache entry, i.e. one identity's credentials.
    """

    def __init__(self, *args: Any, scope: Mapping[str, str], **kwargs: Any):
        self._scope = dict(scope)  # set before super().__init__, which computes the cache key
        super().__init__(*args, **kwargs)

    def _create_cache_key(self) -> str:
        material = json.dumps({"assume_role": self._assume_kwargs, "scope": self._scope}, sort_keys=True)
        return "crosscloud-" + hashlib.sha256(material.encode()).hexdigest()


def cache_scope(target: FederationTarget, identity_key: str, env: Mapping[str, str]) -> dict[str, str]:
    return {"audience": target.audience, "identity": identity_key, "region": target.region,
            "sts_endpoint": env.get("AWS_ENDPOINT_URL_STS") or env.get("AWS_ENDPOINT_URL") or "default"}


def fetch(credential: TokenCredential, target: FederationTarget, *, identity_key: str,
          cache: Any, env: Mapping[str, str] | None = None, session_name: str | None = None,
          who: str = "the managed identity", client_creator: Callable[..., Any] | None = None) -> dict[str, Any]:
    """The credential_process document for `target`, from cache when fresh, else via STS.

    `identity_key` must name the principal behind `credential` (e.g. `client:<id>` or
    `system`): it is part of the cache key, so credentials are never served to another identity.
    """
    env = os.environ if env is None else env
    if client_creator is None:
        session = botocore.session.Session()
        session.set_config_variable("region", target.region)
        client_creator = session.create_client
    fetcher = ScopedWebIdentityFetcher(
        client_creator=client_creator,
        web_identity_token_loader=AzureWebIdentityTokenLoader(credential, target.audience, who),
        role_arn=target.role_arn,
        extra_args={"RoleSessionName": role_session_name(session_name)},
        cache=cache,
        scope=cache_scope(target, identity_key, env),
    )
    creds = explaining(fetcher.fetch_credentials, target)()
    expires = parse_timestamp(creds["expiry_time"]).astimezone(dt.UTC)
    return {"Version": 1, "AccessKeyId": creds["access_key"], "SecretAccessKey": creds["secret_key"],
            "SessionToken": creds["token"], "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}


FLAGS = {"role_arn": ("--role-arn", "AWS_ROLE_ARN"), "audience": ("--audience", "AWS_WEB_IDENTITY_AUDIENCE"),
         "client_id": ("--client-id", "AZURE_CLIENT_ID"), "region": ("--region", "AWS_REGION")}


def settings_from(flags: Mapping[str, str | None], env: Mapping[str, str]) -> Settings:
    """App settings with the given flags layered over the environment."""
    merged = dict(env)
    for attr, (_, setting) in FLAGS.items():
        if flags.get(attr) is not None:
            merged[setting] = str(flags[attr])
    return Settings(merged)


def run(*, role_arn: str | None = None, audience: str | None = None, client_id: str | None = None,
        region: str | None = None, system_assigned: bool = False,
        env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`python -m crosscloud credential-process`: flags override the app settings."""
    env = os.environ if env is None else env
    flags = {"role_arn": role_arn, "audience": audience, "client_id": client_id, "region": region}
    settings = settings_from(flags, env)
    try:
        target = FederationTarget(settings.aws_role_arn, settings.aws_audience, settings.aws_region)
        chosen = None if system_assigned else settings.azure_client_id
    except SettingError as exc:
        raise SettingError(_name_flag(exc.message, flags)) from None
    cache = PrivateFileCache(cache_dir(env))
    who = identity.describe(chosen)
    try:
        return fetch(identity.managed_identity(chosen), target, identity_key=f"client:{chosen}" if chosen else SYSTEM,
                     cache=cache, env=env, session_name="credential-process", who=who)
    except IdentityError as exc:  # say what Entra's refusal means, on one line
        setting = "--audience" if audience is not None else "AWS_WEB_IDENTITY_AUDIENCE"
        problem = entra_errors.explain(exc.message, resource=target.audience, who=who, setting=setting)
        raise IdentityError(f"{who} could not get a token for {target.audience}: {problem.cause} "
                            f"[{problem.code}]. Fix: {problem.fix}", code=exc.code, status=exc.status) from None


def _name_flag(message: str, flags: Mapping[str, str | None]) -> str:
    """Say `--role-arn` rather than `app setting AWS_ROLE_ARN` when the value came from the flag."""
    for attr, (flag, setting) in FLAGS.items():
        if flags.get(attr) is not None:
            message = message.replace(f"app setting {setting}", flag)
    return message
