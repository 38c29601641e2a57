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
from crosscloud.errors import SettingError
from crosscloud.settings import Settings
from crosscloud.stores.azure import BLOCK, CHUNK, AzureBlobStore
from crosscloud.stores.base import ObjectStore
from crosscloud.stores.s3 import S3Store

SOURCES = ("azure", "s3")
_cache: dict[tuple[Any, ...], Any] = {}
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
            store = AzureBlobStore(container, identity.managed_identity(client_id),
                                   who=identity.describe(client_id), timeout=timeout, chunk_size=chunk_size,
                                   block_size=block_size)
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
            store = S3Store(session, bucket, role_arn=role, timeout=timeout)
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
    client_id = settings._env.get("CROSSCLOUD_QUEUE__clientId", "").strip() or settings.azure_client_id  # noqa: SLF001
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
    if source == "azure":
        return azure_store(settings)
    if source == "s3":
        return s3_store(settings)
    raise ValueError(f"unknown source {source!r}")


def reset_for_tests() -> None:
    from crosscloud.auth import federation

    with _lock:
        _cache.clear()
    federation.reset_for_tests()
    identity.reset_for_tests()
