"""The backup index against the local cloud: written in parts one at a time, read back whole."""

from __future__ import annotations

import os

import pytest

from crosscloud.backup import index
from crosscloud.stores import factory

pytestmark = pytest.mark.integration
MIB = 1024 * 1024


def test_an_index_larger_than_one_part_is_uploaded_one_part_at_a_time_and_read_back_whole(
        env, prefix, monkeypatch, aws_admin):
    """S3 takes parts of 5 MiB at least (all but the last): the index goes up in 5 MiB parts with
    one in flight (no s3transfer threads), built on disk past a small spool."""
    dest = f"{env['BACKUP_S3_PREFIX']}{prefix}"
    monkeypatch.setattr(index, "UPLOAD_PART_BYTES", 5 * MIB)
    monkeypatch.setattr(index, "SPOOL_BYTES", 64 * 1024)
    store = factory.s3_store(backup=True)
    writer = index.IndexWriter(store.sort_key, store.listing_order)
    # Random ETags barely compress: ~7 MB of gzip, so two parts.
    entries = {f"{prefix}k/{i:06d}": (os.urandom(16).hex(), os.urandom(48).hex()) for i in range(80_000)}
    for key, (dest_etag, source_etag) in entries.items():
        writer.add(key, dest_etag, source_etag)
    key = dest + index.INDEX_NAME
    writer.save(store, key, {"run_id": "test"}, 64 * MIB)
    head = aws_admin.head_object(Bucket=env["BACKUP_S3_BUCKET"], Key=key)
    assert head["ContentLength"] > 5 * MIB
    assert head["ETag"].strip('"').endswith("-2")  # really two parts
    assert dict(index.read(store, key, store.listing_order)) == entries
