"""Backup tuning from the app settings, and the memory budget the copies share."""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from crosscloud.errors import SettingError
from crosscloud.settings import CONTROL, Settings

MIB = 1024 * 1024
MAX_PARTS = 10_000  # S3's limit on parts per multipart upload
RESERVED = ".crosscloud/"  # under the destination prefix: the lease and the index, never source data


@dataclass(frozen=True)
class BackupConfig:
    prefix: str = "backup/"  # destination prefix; a source key K is copied to prefix + K
    source_prefix: str = ""  # only source keys under this (default: the whole container)
    part_size: int = 16 * MIB  # also the single-request threshold
    concurrency: int = 8  # objects copied at once
    part_concurrency: int = 4  # parts of one object uploaded at once
    checkers: int = 16  # destination HEADs at once
    memory_budget: int = 256 * MIB  # bytes buffered by all copies together (one copy may exceed)
    time_budget_s: float = 1500  # under host.json's functionTimeout of 30 min
    finish_grace_s: float = 20  # in-flight copies are cut (left pending) this long after the budget
    assumed_mib_s: float = 32  # cautious per-copy rate: a copy that could not finish in time is not started
    lease_ttl_s: float = 300
    attempts: int = 3
    retry_base_s: float = 1.0
    fast_path_bytes: int = 8 * MIB  # objects up to this size take the stores' lean paths (0: never)

    @classmethod
    def from_settings(cls, settings: Settings) -> BackupConfig:
        """Every tuning setting bounded: a value outside its range is named, never clamped."""
        part_mb = settings.int_setting("BACKUP_PART_SIZE_MB", 16, minimum=5, maximum=5120)  # S3's part limits
        return cls(
            prefix=settings.backup_prefix,
            source_prefix=_source_prefix(settings),
            part_size=part_mb * MIB,
            concurrency=settings.int_setting("BACKUP_CONCURRENCY", 8, maximum=64),
            part_concurrency=settings.int_setting("BACKUP_PART_CONCURRENCY", 4, maximum=32),
            checkers=settings.int_setting("BACKUP_CHECKERS", 16, maximum=64),
            memory_budget=settings.int_setting("BACKUP_MEMORY_MB", 256, minimum=16, maximum=65536) * MIB,
            time_budget_s=settings.int_setting("BACKUP_TIME_BUDGET_SECONDS", 1500, maximum=86400),
            lease_ttl_s=settings.int_setting("BACKUP_LEASE_SECONDS", 300, minimum=2, maximum=3600),
            fast_path_bytes=settings.int_setting("BACKUP_FAST_PATH_MB", 8, minimum=0, maximum=64) * MIB,
        )

    def fast_path_limit(self, part_size: int) -> int:
        """Largest object the lean paths take: single-request objects only, up to the setting
        (-1 when it is 0: not even empty objects)."""
        return min(self.fast_path_bytes, part_size - 1) if self.fast_path_bytes > 0 else -1

    def part_size_for(self, size: int) -> int:
        """The configured part size, raised (in whole MiB) where 10,000 parts would not do."""
        return max(self.part_size, math.ceil(size / MAX_PARTS / MIB) * MIB)


def _source_prefix(settings: Settings) -> str:
    """BACKUP_SOURCE_PREFIX: back up only part of the container (default: all of it)."""
    value = settings.raw("BACKUP_SOURCE_PREFIX")
    if value.startswith("/") or value.startswith(RESERVED) or CONTROL.search(value) or len(value.encode()) > 1024:
        raise SettingError("app setting BACKUP_SOURCE_PREFIX is malformed: expected a blob name prefix "
                           "like reports/ (no leading slash), or leave it unset for the whole container")
    return value


class MemoryBudget:
    """Bytes that copies may buffer at once; a copy larger than the budget runs alone."""

    def __init__(self, limit: int):
        self._limit = limit
        self._used = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, amount: int) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: self._used == 0 or self._used + amount <= self._limit)
            self._used += amount
        try:
            yield
        finally:
            with self._cond:
                self._used -= amount
                self._cond.notify_all()
