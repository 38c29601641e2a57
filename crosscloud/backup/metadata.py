"""The bookkeeping metadata a copy carries, and the user metadata it keeps.

A backup copy keeps the source's user metadata and adds `crosscloud-*` keys: which source
version it is a copy of (ETag, last modified, Content-MD5), or that it is unverified. A
restore strips them again: they describe the backup, not the blob.
"""

from __future__ import annotations

from collections.abc import Mapping

from crosscloud.backup.report import utc_iso
from crosscloud.backup.stream import b64
from crosscloud.stores.base import ObjectInfo

BOOKKEEPING = "crosscloud-"
SOURCE_ETAG = "crosscloud-source-etag"
SOURCE_MODIFIED = "crosscloud-source-last-modified"
SOURCE_MD5 = "crosscloud-source-content-md5"
UNVERIFIED = "crosscloud-unverified"


def user_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """The source's own metadata, keys lower-cased (S3 and Azure both fold case), ours left out."""
    return {k.lower(): v for k, v in (metadata or {}).items() if not k.lower().startswith(BOOKKEEPING)}


def backup_metadata(src: ObjectInfo, verified: bool) -> dict[str, str]:
    """What a backup copy of `src` carries: its user metadata plus which version it copies."""
    metadata = {k.lower(): v for k, v in (src.metadata or {}).items()}
    metadata[SOURCE_MODIFIED] = utc_iso(src.last_modified)
    if src.content_md5:
        metadata[SOURCE_MD5] = b64(src.content_md5)
    if verified:
        metadata[SOURCE_ETAG] = src.etag
    else:
        metadata[UNVERIFIED] = "checksum mismatch after upload; the next run copies it again"
    return metadata
