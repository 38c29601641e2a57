"""moto's ListObjectsV2 made to echo `StartAfter` as S3 does: URL-encoded with encoding-type=url.

AWS documents that with `encoding-type=url` S3 URL-encodes Delimiter, Prefix, Key and
StartAfter in the response. moto encodes Key and Prefix but echoes StartAfter raw, so a
listing that starts after a key holding a character XML cannot carry (U+FFFF, most control
characters; legal in S3 keys) fails with a 500 where S3 answers. Wrapped here, not forked.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from moto.core.responses import ActionResult
from moto.s3.responses import S3Response


def install() -> None:
    """Idempotent."""
    if getattr(S3Response, "_devstack_start_after", False):
        return
    original = S3Response.serialized

    def serialized(self: Any, action_result: ActionResult) -> Any:
        result = action_result.result
        if isinstance(result, dict) and result.get("StartAfter") and result.get("EncodingType") == "url":
            result["StartAfter"] = quote(result["StartAfter"])
        return original(self, action_result)

    S3Response.serialized = serialized  # type: ignore[method-assign]
    S3Response._devstack_start_after = True  # type: ignore[attr-defined]
