"""Builds the configured stores from the settings, once per process.

SDK clients hold connection pools and (for S3) the credential refresher, so they are
created once and reused across invocations; the cache key is everything that shapes
them, so a changed setting yields a new client instead of a stale one.
"""

from __future__ import annotations

import threading
from typing import Any

from crosscloud.auth import identity
from crosscloud.auth.federation import FederationTarget, shared_session
from crosscloud.settings import Settings
from crosscloud.stores import fast_azure, fast_s3, transport
from crosscloud.stores.azure import BLOCK, CHUNK, AzureBlobStore
from crosscloud.stores.base import ObjectStore
from crosscloud.stores.s3 import S3Store

SOURCES = ("azure", "s3")
_cache: dict[tuple[Any, ...], ObjectStore] = {}
_lock = threading.Lock()


def _timeout(settings: Settings) -> int:
    return settings.int_setting("UPSTREAM_TIMEOUT_SECONDS", 30)


def azure_store(settings: Settings | None = None, *, chunk_size: int = CHUNK,
                block_size: int = BLOCK) -> AzureBlobStore:
    """The Azure store; backups read in larger ranges (`chunk_size`) than HTTP reads do,
    restores write in blocks of the configured part size (`block_size`)."""
    settings = settings or Settings()
    container, client_id, timeout = settings.container_url, settings.azure_client_id, _timeout(settings)
    key = ("azure", container, client_id, timeout, chunk_size, block_size)
    with _lock:
        store = _cache.get(key)
        if store is None:
            credential, who, pool = identity.managed_identity(client_id), identity.describe(client_id), \
                transport.pool_size(settings)
            store = AzureBlobStore(container, credential, who=who, timeout=timeout, chunk_size=chunk_size,
                                   block_size=block_size, session=transport.requests_session(pool))
            fast_azure.attach(store, container, credential, who=who, timeout=timeout, pool=pool)
            _cache[key] = store
    assert isinstance(store, AzureBlobStore)
    return store


def s3_store(settings: Settings | None = None, *, backup: bool = False, restore: bool = False) -> S3Store:
    """The S3 store for listing/reading (read role), for backups (backup role and bucket), or
    for restores (the backup bucket, read with the restore role)."""
    settings = settings or Settings()
    role = settings.aws_restore_role_arn if restore else \
        settings.aws_backup_role_arn if backup else settings.aws_role_arn
    bucket = settings.backup_bucket if backup or restore else settings.s3_bucket
    target = FederationTarget(role, settings.aws_audience, settings.aws_region)
    client_id, timeout = settings.azure_client_id, _timeout(settings)
    key = ("s3", bucket, target, client_id, timeout)
    with _lock:
        store = _cache.get(key)
        if store is None:
            session = shared_session(identity.managed_identity(client_id), target)
            pool = transport.pool_size(settings)
            store = S3Store(session, bucket, role_arn=role, timeout=timeout, pool=pool)
            fast_s3.attach(store, session.get_credentials(), timeout=timeout, pool=pool)
            _cache[key] = store
    assert isinstance(store, S3Store)
    return store


def store_for(source: str, settings: Settings | None = None) -> ObjectStore:
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
