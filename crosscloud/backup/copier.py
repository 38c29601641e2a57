"""The copier: moves one object across, streamed and verified end to end, with its retries.

Bytes go through `VerifyingStream` (size, per-part SHA-256 checked by S3 before the upload
completes, Content-MD5 of the source), so a bad read never becomes a visible copy. Object-
level retries with backoff sit on top of the SDKs' request retries; errors every other object
would hit too (trust, permissions, settings) are fatal and stop the run instead.
"""

from __future__ import annotations

import enum
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from crosscloud.backup.config import BackupConfig, MemoryBudget
from crosscloud.backup.plan import Action, Decision
from crosscloud.backup.report import Counters
from crosscloud.backup.stream import VerifyingStream
from crosscloud.errors import (
    CrossCloudError,
    FederationError,
    IntegrityError,
    NotFound,
    PreconditionFailed,
    SettingError,
)
from crosscloud.stores.base import ObjectInfo, ObjectReader, ObjectStore, PutOptions

log = logging.getLogger("crosscloud.backup")
MAX_BACKOFF_S = 20


class Result(enum.Enum):
    COPIED = "copied"
    VANISHED = "vanished"  # gone from the source since it was listed: nothing to copy
    PENDING = "pending"  # not (fully) done because the run is stopping; the next run does it
    CONFLICT = "conflict"  # a conditional write lost: the destination changed meanwhile, left alone
    FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    result: Result
    size: int = 0
    reason: str = ""
    fatal: bool = False  # every other object would fail the same way: stop the run
    outage: bool = False  # the cloud did not answer (as opposed to refusing this object)


class StopCopy(Exception):
    """Raised into an in-flight copy when the run's hard deadline passes; the copy is abandoned."""


class UploadAborted(CrossCloudError):
    """The destination no longer knows the upload: a successor run cleaned it up."""

    code = "upload_aborted"
    status = 409


def fatal(exc: Exception) -> bool:
    """Errors every other object would hit too (permissions, trust, settings)."""
    return isinstance(exc, (FederationError, SettingError)) or (
        isinstance(exc, CrossCloudError) and exc.code.endswith(("_forbidden", "_no_such_bucket",
                                                                  "_container_not_found")))


def outage(exc: Exception) -> bool:
    """The cloud did not answer (timeouts, connection failures, 503s), as opposed to a refusal."""
    return isinstance(exc, CrossCloudError) and exc.status == 503 and not fatal(exc)


def retryable(exc: Exception) -> bool:
    if isinstance(exc, UploadAborted):
        return False  # a successor run owns the prefix now
    if isinstance(exc, IntegrityError):
        return True
    if isinstance(exc, CrossCloudError):
        return exc.status >= 500 and not fatal(exc)
    return True  # unexpected exception types: a retry is cheap, the reason gets reported


def reason(exc: Exception) -> str:
    if isinstance(exc, CrossCloudError):
        return exc.message
    return f"unexpected {type(exc).__name__}"  # never str(exc): SDK errors can echo URLs with SAS


Metadata = Callable[[ObjectInfo, bool], dict[str, str]]
Md5Of = Callable[[ObjectInfo], "bytes | None"]  # the MD5 the source recorded for these bytes
Learn = Callable[[str, str, "str | None"], None]
NO_CONDITION = Decision(Action.COPY)


class Copier:
    """Copies source objects to `dest_key(key)` in the destination; one `copy` per object."""

    def __init__(self, source: ObjectStore, dest: ObjectStore, config: BackupConfig, *,
                 dest_key: Callable[[str], str], metadata: Metadata, learn: Learn,
                 stopping: Callable[[], bool], deadline: Callable[[], float],
                 counters: Counters | None = None, content_md5: Md5Of | None = None):
        self.source, self.dest, self.config = source, dest, config
        self.dest_key, self.metadata, self.learn = dest_key, metadata, learn
        self.content_md5: Md5Of = content_md5 or (lambda src: src.content_md5)
        self.stopping, self.deadline = stopping, deadline
        self.counters = counters or Counters()
        self.memory = MemoryBudget(config.memory_budget)

    def copy(self, info: ObjectInfo, decision: Decision = NO_CONDITION) -> Outcome:
        """Copy with retries (conditional on the destination as `decision` says); never raises."""
        for attempt in range(1, self.config.attempts + 1):
            if self.stopping():
                return Outcome(Result.PENDING, info.size)
            try:
                size = self.copy_once(info, condition=decision)
            except StopCopy:
                return Outcome(Result.PENDING, info.size, "stopped mid-copy at the run's deadline")
            except NotFound:
                log.info("%r disappeared from the source during the run; skipped", info.key)
                return Outcome(Result.VANISHED)
            except PreconditionFailed as exc:
                log.info("%s; left alone", exc.message)
                return Outcome(Result.CONFLICT, info.size, exc.message)
            except Exception as exc:
                if fatal(exc):
                    return Outcome(Result.FAILED, info.size, reason(exc), fatal=True)
                if attempt == self.config.attempts or not retryable(exc):
                    return self._give_up(info, exc)
                delay = min(self.config.retry_base_s * 2 ** (attempt - 1), MAX_BACKOFF_S) \
                    * random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not security
                log.warning("copy of %r failed (attempt %d/%d: %s); retrying in %.1f s",
                            info.key, attempt, self.config.attempts, reason(exc), delay)
                time.sleep(max(0.0, min(delay, self.deadline() - time.monotonic())))
                continue
            return Outcome(Result.COPIED, size)
        return Outcome(Result.PENDING, info.size)

    def copy_once(self, info: ObjectInfo, *, verified: bool = True, condition: Decision = NO_CONDITION) -> int:
        """Stream one object across; returns its size. Raises on any mismatch."""
        part = self.config.part_size_for(info.size)
        reserve = info.size if info.size < part else part * (self.config.part_concurrency + 2)
        with self.memory.reserve(reserve), self._open(info, part) as reader:
            src = reader.info  # the version actually read (the listing may be older)
            part = self.config.part_size_for(src.size)
            md5 = self.content_md5(src)
            stream = VerifyingStream(reader.iter_chunks(), key=src.key, size=src.size, part_size=part,
                                     content_md5=md5, on_bytes=self._moved)
            options = PutOptions(content_type=src.content_type, metadata=self.metadata(src, verified),
                                 part_size=part, concurrency=self.config.part_concurrency,
                                 multipart_threshold=part, part_sha256=stream.part_sha256, content_md5=md5,
                                 if_none_match=condition.if_none_match, if_match=condition.if_match,
                                 lean=src.size <= self.config.fast_path_limit(part))
            target = self.dest_key(src.key)
            try:
                result = self.dest.put(target, stream, src.size, options)
            except NotFound:  # the source was readable: it is the upload that is gone
                raise UploadAborted(f"the upload of {target!r} was aborted by another run "
                                    "(a successor that took over the lease cleaned it up)") from None
        self.learn(src.key, result.etag, None)  # known again once verified, below
        if not stream.finished:
            raise IntegrityError(f"the destination accepted {src.key!r} before it was read to the end")
        # S3 reports the SHA-256 it stored (whole object, or `composite-N` for multipart).
        if verified and result.checksum_sha256 is not None and not stream.matches(result.checksum_sha256):
            exc = IntegrityError(f"the destination's SHA-256 of {src.key!r} ({result.checksum_sha256}) "
                                 "differs from the bytes read")
            exc.visible = True  # type: ignore[attr-defined]
            raise exc
        self.learn(src.key, result.etag, src.etag if verified else None)
        return src.size

    def _open(self, info: ObjectInfo, part: int) -> ObjectReader:
        """Small objects in one lean request where the source has one, else the SDK's stream."""
        limit = self.config.fast_path_limit(part)
        return (self.source.open_small(info.key, limit) if info.size <= limit else None) \
            or self.source.open(info.key)

    def _moved(self, count: int) -> None:
        self.counters.add(bytes_moved=count)
        if time.monotonic() >= self.deadline() + self.config.finish_grace_s:
            raise StopCopy

    def _give_up(self, info: ObjectInfo, exc: Exception) -> Outcome:
        why = reason(exc)
        if getattr(exc, "visible", False):
            # A copy that failed verification after it became visible still carries the
            # source ETag; rewrite it without, so the next run does not take it as current.
            try:
                self.copy_once(info, verified=False)
            except Exception as again:
                why += f"; marking the copy unverified failed too ({reason(again)}), the next " \
                       "run may consider it current"
        return Outcome(Result.FAILED, info.size, why, outage=outage(exc))
