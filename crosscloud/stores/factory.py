"""Builds the configured stores from the settings, once per process.

SDK clients hold connection pools and (for S3) the credential refresher, so they are
created once and reused across invocations; the cache key is everything that shapes
them, so a changed setting yields a new client instead of a stale one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any
from urllib.request import getproxies

from botocore.config import Config

from crosscloud.auth import identity
from crosscloud.auth.federation import FederationTarget, client_config, shared_session
from crosscloud.errors import SettingError
from crosscloud.settings import Settings
from crosscloud.stores import fast_azure, fast_s3, transport
from crosscloud.stores.azure import BLOCK, CHUNK, AzureBlobStore
from crosscloud.stores.base import ObjectStore
from crosscloud.stores.s3 import S3Store

SOURCES = ("azure", "s3")
ATTEMPTS = 2  # a listing or read tries a silent cloud twice, then answers 503
BACKOFF_S = 1.5  # the most either SDK sleeps between those two attempts (see Budget)
_cache: dict[tuple[Any, ...], Any] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class Budget:
    """Per-attempt timeouts and attempts of one SDK call, so a cloud that accepts connections
    and never answers costs at most `attempts * (connect_s + read_s) + backoff`.

    Interactive calls (listing, reads) fit UPSTREAM_DEADLINE_SECONDS whatever the SDKs'
    defaults (botocore: 60 s reads; azure-storage: 15 s+ backoffs): botocore standard mode
    waits at most 1 s before its second attempt, the Azure linear retry 1 +- 0.5 s.
    Backups are bulk: read timeout UPSTREAM_TIMEOUT_SECONDS per part, four attempts.
    """

    connect_s: float
    read_s: float
    attempts: int
    interactive: bool

    @classmethod
    def from_settings(cls, settings: Settings, *, bulk: bool = False) -> Budget:
        read_cap = settings.upstream_timeout_s
        if bulk:
            return cls(min(read_cap, 10), read_cap, 4, interactive=False)
        deadline = settings.upstream_deadline_s
        connect = min(2.0, deadline / 10)
        read = min(read_cap, (deadline - BACKOFF_S) / ATTEMPTS - connect)
        return cls(round(connect, 3), round(read, 3), ATTEMPTS, interactive=True)

    def botocore(self, **extra: Any) -> Config:
        return client_config(timeout=self.read_s, max_attempts=self.attempts, connect_timeout=self.connect_s, **extra)


def azure_store(settings: Settings | None = None, *, chunk_size: int = CHUNK, block_size: int = BLOCK,
                bulk: bool = False) -> AzureBlobStore:
    """The Azure store; backups read in larger ranges (`chunk_size`) than HTTP reads do,
    restores write in blocks of the configured part size (`block_size`); both are `bulk`."""
    settings = settings or Settings()
    settings.check_endpoints()
    container, client_id = settings.container_url, settings.azure_client_id
    budget = Budget.from_settings(settings, bulk=bulk)
    key = ("azure", container, client_id, budget, chunk_size, block_size)
    with _lock:
        store = _cache.get(key)
        if store is None:
            credential, who, pool = identity.managed_identity(client_id), identity.describe(client_id), \
                transport.pool_size(settings)
            store = AzureBlobStore(container, credential, who=who, timeout=budget.read_s,
                                   connect_timeout=budget.connect_s, retries=budget.attempts - 1,
                                   quick_retry=budget.interactive, chunk_size=chunk_size, block_size=block_size,
                                   session=transport.requests_session(pool))
            if not getproxies():  # the lean path has no proxy support: the SDK's honours HTTPS_PROXY
                fast_azure.attach(store, container, credential, who=who, timeout=budget.read_s, pool=pool)
            _cache[key] = store
    assert isinstance(store, AzureBlobStore)
    return store


def s3_store(settings: Settings | None = None, *, backup: bool = False, restore: bool = False) -> S3Store:
    """The S3 store for listing/reading (read role), for backups (backup role and bucket), or
    for restores (the backup bucket, read with the restore role)."""
    settings = settings or Settings()
    settings.check_endpoints()
    if restore:
        role = settings.aws_restore_role_arn
        role_source = "AWS_RESTORE_ROLE_ARN" if settings.raw("AWS_RESTORE_ROLE_ARN") else \
            f"{settings.backup_role_source}, used because AWS_RESTORE_ROLE_ARN is unset"
    elif backup:
        role, role_source = settings.aws_backup_role_arn, settings.backup_role_source
    else:
        role, role_source = settings.aws_role_arn, "AWS_ROLE_ARN"
    bucket = settings.backup_bucket if backup or restore else settings.s3_bucket
    target = FederationTarget(role, settings.aws_audience, settings.aws_region)
    client_id = settings.azure_client_id
    budget = Budget.from_settings(settings, bulk=backup or restore)
    sts = Budget.from_settings(settings)  # a credential refresh is on an interactive path too
    key = ("s3", bucket, target, client_id, budget, role_source)
    with _lock:
        store = _cache.get(key)
        if store is None:
            session = shared_session(identity.managed_identity(client_id), target, sts.botocore())
            pool = transport.pool_size(settings)
            store = S3Store(session, bucket, role_arn=role, role_source=role_source,
                            config=budget.botocore(pool=pool))
            if not getproxies():
                fast_s3.attach(store, session.get_credentials(), timeout=budget.read_s, pool=pool)
            _cache[key] = store
    assert isinstance(store, S3Store)
    return store


def shard_queue(settings: Settings | None = None, name: str = "crosscloud-backup-shards") -> Any:
    """The backup fan-out queue, over the identity-based connection `CROSSCLOUD_QUEUE__*` (the
    host's convention: `__queueServiceUri`, `__clientId`), base64 like the queue trigger reads."""
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

    settings = settings or Settings()
    uri = settings._get("CROSSCLOUD_QUEUE__queueServiceUri")  # noqa: SLF001 - the settings' own reader
    if not uri.startswith("https://") or "?" in uri:
        raise SettingError("app setting CROSSCLOUD_QUEUE__queueServiceUri is malformed: expected the queue "
                           "service URL, like https://<account>.queue.core.windows.net (no SAS)")
    client_id = settings.raw("CROSSCLOUD_QUEUE__clientId") or settings.azure_client_id
    key = ("queue", uri, name, client_id)
    with _lock:
        queue = _cache.get(key)
        if queue is None:
            queue = QueueClient(uri, name, credential=identity.managed_identity(client_id),
                                message_encode_policy=TextBase64EncodePolicy(),
                                message_decode_policy=TextBase64DecodePolicy())
            _cache[key] = queue
    return queue


def store_for(source: str, settings: Settings | None = None) -> ObjectStore:
    """The store an HTTP listing or read uses (interactive budget)."""
    if source == "azure":
        return azure_store(settings)
    if source == "s3":
        return s3_store(settings)
    raise ValueError(f"unknown source {source!r}")


def reset_for_tests() -> None:
    from crosscloud.auth import federation

    with _lock:
        _cache.clear()
    transport.reset_for_tests()
    federation.reset_for_tests()
    identity.reset_for_tests()
