"""AWS `credential_process` backed by the managed identity, with a per-user file cache.

The AWS CLI and SDKs run the process for every command and do not cache its output, so
without a cache every `aws ...` call would cost an Entra token and an STS call. botocore's
own pieces do the work: `AssumeRoleWithWebIdentityCredentialFetcher` reuses cached
credentials until 15 minutes before they expire, and `JSONFileCache` stores them (files
created 0600). We add a private directory (0700), a cache key that names the identity and
audience as well as the role, so two identities never share credentials, and a lock per
entry, so processes started together make one STS call.

Output (stdout) is the protocol, and the one place credentials are printed:
`{"Version": 1, "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from azure.core.credentials import TokenCredential
from botocore.credentials import AssumeRoleWithWebIdentityCredentialFetcher
from botocore.utils import JSONFileCache, parse_timestamp

from crosscloud.auth import identity
from crosscloud.auth.federation import (
    AzureWebIdentityTokenLoader,
    FederationTarget,
    client_config,
    explaining,
    role_session_name,
    sts_session,
)
from crosscloud.doctor import entra_errors
from crosscloud.errors import CrossCloudError, IdentityError, SettingError
from crosscloud.settings import Settings

CACHE_ENV = "CROSSCLOUD_CACHE_DIR"
SYSTEM = "system"
LOCK_WAIT_S = 60.0  # longer than one bounded fetch (identity + STS timeouts)


class CacheError(CrossCloudError):
    code = "cache_error"
    status = 500


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where entries live: a private `crosscloud-<uid>` inside `$CROSSCLOUD_CACHE_DIR` (which may
    be shared, like /tmp), else `$XDG_CACHE_HOME/crosscloud/credential-process`, else ~/.cache/..."""
    env = os.environ if env is None else env
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV]).expanduser() / f"crosscloud-{os.getuid()}"
    base = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "crosscloud" / "credential-process"


def private_dir(path: Path, *, shared_parent: bool = False) -> Path:
    """Create `path` 0700 (or tighten it: it is ours); refuse a symlink or another user's directory.

    With `shared_parent` (the directory named by CROSSCLOUD_CACHE_DIR), the parent is created
    if missing but never chmod-ed: it may be /tmp. A parent others may write to without the
    sticky bit is refused, since anyone could swap our directory in it.
    """
    where = f"{path} (in {CACHE_ENV})" if shared_parent else str(path)
    if shared_parent:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        parent = path.parent.stat()
        if parent.st_mode & 0o022 and not parent.st_mode & stat.S_ISVTX:
            raise CacheError(f"{CACHE_ENV} {path.parent} is writable by other users without the sticky "
                             "bit; use a directory of your own or one like /tmp (mode 1777)")
    else:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise CacheError(f"credential cache directory {where} is not a plain directory; remove it")
    if info.st_uid != os.getuid():
        hint = f"point {CACHE_ENV} elsewhere" if shared_parent else f"set {CACHE_ENV} to a directory of your own"
        raise CacheError(f"credential cache directory {where} belongs to another user; {hint}")
    if stat.S_IMODE(info.st_mode) != 0o700:
        path.chmod(0o700)
    return path


class PrivateFileCache(JSONFileCache):
    """botocore's JSONFileCache in a private directory; an unreadable entry counts as a miss.

    `lock(key)` serialises fetches of one entry across processes (`fcntl.flock` on a lock file
    beside it), so concurrent cold starts make one STS call and the others read its result.
    """

    def __init__(self, directory: Path, *, shared_parent: bool = False):
        self.directory = private_dir(directory, shared_parent=shared_parent)
        super().__init__(working_dir=str(self.directory))

    def __contains__(self, cache_key: str) -> bool:
        try:
            self[cache_key]
        except KeyError:
            return False
        return True

    @contextlib.contextmanager
    def lock(self, cache_key: str, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
        try:
            fd = os.open(self.directory / f"{cache_key}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:  # ELOOP: someone put a symlink where our lock file goes
            raise CacheError(f"cannot open the lock file of a credential cache entry in {self.directory}: "
                             f"{exc.strerror or type(exc).__name__}") from None
        try:
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise CacheError(f"credential cache entry in {self.directory} stayed locked by another "
                                         f"credential-process for {wait_s:.0f} s") from None
                    time.sleep(0.02)
            yield
        finally:
            os.close(fd)  # releases the lock


def open_cache(env: Mapping[str, str] | None = None) -> PrivateFileCache:
    env = os.environ if env is None else env
    directory = cache_dir(env)
    try:
        return PrivateFileCache(directory, shared_parent=bool(env.get(CACHE_ENV)))
    except OSError as exc:  # a file in the way, no permission, a read-only file system ...
        setting = CACHE_ENV if env.get(CACHE_ENV) else f"{CACHE_ENV} (unset)"
        raise CacheError(f"cannot use the credential cache directory {directory} ({setting}): "
                         f"{exc.strerror or type(exc).__name__}") from None


class ScopedWebIdentityFetcher(AssumeRoleWithWebIdentityCredentialFetcher):
    """botocore's web-identity fetcher whose cache key also names identity, audience and STS endpoint.

    botocore hashes only the AssumeRole arguments (role, session name): two identities or two
    audiences for the same role would share one cache entry, i.e. one identity's credentials.
    """

    def __init__(self, *args: Any, scope: Mapping[str, str], **kwargs: Any):
        self._scope = dict(scope)  # set before super().__init__, which computes the cache key
        super().__init__(*args, **kwargs)
        self.cache_key = self._create_cache_key()

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
    if client_creator is None:  # bounded: an AWS tool waits on us
        client_creator = sts_session(target.region, client_config(timeout=10, max_attempts=2, connect_timeout=3)
                                     ).create_client
    fetcher = ScopedWebIdentityFetcher(
        client_creator=client_creator,
        web_identity_token_loader=AzureWebIdentityTokenLoader(credential, target.audience, who),
        role_arn=target.role_arn,
        extra_args={"RoleSessionName": role_session_name(session_name)},
        cache=cache,
        scope=cache_scope(target, identity_key, env),
    )
    lock = getattr(cache, "lock", None)  # one fetch per entry across processes, the rest read it
    with lock(fetcher.cache_key) if lock is not None else contextlib.nullcontext():
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
        settings.check_endpoints()
    except SettingError as exc:
        raise SettingError(_name_flag(exc.message, flags)) from None
    cache = open_cache(env)
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
