"""A run lease in the destination itself, so two backup runs never overlap.

The lease is a small JSON object (`<prefix>.crosscloud/lease`: run id, holder, expiry)
written with conditional puts, the store's compare-and-swap:
- acquire: create it only if absent (`If-None-Match: *`); if present and expired, replace
  it only if it is still the copy we read (`If-Match: <etag>`); either race has one winner.
- renew: a heartbeat thread re-writes it `If-Match` our last ETag every ttl/3; a refusal
  means another run took it over (we were presumed dead) and `lost` is set.
- release: re-written as expired, `If-Match` ours; never deleted, so a release can never
  remove a lease that another run has taken meanwhile.
A run killed with SIGKILL leaves its lease to expire after `ttl` seconds; the next run then
takes it over. Requests retried by botocore after a lost response can see their own write
as a conflict, so every refusal is checked against the run id in the lease body.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass

from crosscloud.errors import CrossCloudError, NotFound, PreconditionFailed
from crosscloud.stores.base import ObjectStore, PutOptions

log = logging.getLogger("crosscloud.backup")
LEASE_NAME = ".crosscloud/lease"


class LeaseHeld(CrossCloudError):
    """Another run holds the lease; this run did nothing."""

    code = "backup_running"
    status = 409
    retry_after = 60


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class _Seen:
    etag: str
    run_id: str
    expires: float
    released: bool = False


class Lease:
    def __init__(self, store: ObjectStore, key: str, run_id: str, ttl: float):
        if not store.supports_conditional_put:
            raise CrossCloudError(f"{store.describe()} cannot hold a run lease (no conditional writes)",
                                  code="lease_unsupported")
        self.store, self.key, self.run_id, self.ttl = store, key, run_id, ttl
        self.etag: str | None = None
        self.expires = 0.0
        self.lost = threading.Event()
        self.took_over: str | None = None  # run id of the stale lease we replaced, if any
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the object ------------------------------------------------------------------
    def _body(self, expires: float, released: bool = False) -> bytes:
        return json.dumps({"run_id": self.run_id, "holder": socket.gethostname(), "released": released,
                           "expires": _iso(expires), "expires_epoch": expires}).encode()

    def _read(self) -> _Seen | None:
        try:
            with self.store.open(self.key) as reader:
                raw = reader.read(64 * 1024)
                etag = reader.info.etag
        except NotFound:
            return None
        try:
            data = json.loads(raw)
            return _Seen(etag, str(data["run_id"]), float(data["expires_epoch"]), bool(data.get("released")))
        except (ValueError, KeyError, TypeError):
            return _Seen(etag, "?", 0.0)  # unreadable: treat as expired, replace it If-Match

    def _write(self, expires: float, *, if_match: str | None, released: bool = False) -> None:
        body = self._body(expires, released)
        options = PutOptions(content_type="application/json", if_none_match=if_match is None,
                             if_match=if_match)
        result = self.store.put(self.key, io.BytesIO(body), len(body), options)
        self.etag, self.expires = result.etag, expires

    def _mine_after_conflict(self, expires: float) -> bool:
        """After a refusal: was it our own earlier attempt (a retried request)?"""
        seen = self._read()
        if seen is not None and seen.run_id == self.run_id and abs(seen.expires - expires) < 1e-3:
            self.etag, self.expires = seen.etag, expires
            return True
        return False

    # --- lifecycle -------------------------------------------------------------------
    def acquire(self, heartbeat: bool = True) -> Lease:
        """Take the lease; without `heartbeat` it is held until its ttl or `end_if_mine` (a
        fan-out run: planned by one invocation, ended by whichever shard finishes last)."""
        self._heartbeat_on = heartbeat
        for _ in range(3):
            expires = time.time() + self.ttl
            try:
                self._write(expires, if_match=None)
                return self._start()
            except PreconditionFailed:
                if self._mine_after_conflict(expires):
                    return self._start()
            seen = self._read()
            if seen is None:
                continue  # released and gone meanwhile: try to create it again
            if seen.expires > time.time():
                raise LeaseHeld(f"another backup run ({seen.run_id}) holds the lease until "
                                f"{_iso(seen.expires)}; this run did nothing")
            try:
                self._write(expires, if_match=seen.etag)
                if not seen.released:
                    self.took_over = seen.run_id
                    log.warning("backup run %s took over the expired lease of run %s (killed or stuck)",
                                self.run_id, seen.run_id)
                return self._start()
            except PreconditionFailed:
                if self._mine_after_conflict(expires):
                    return self._start()
        raise LeaseHeld("another backup run is taking the lease right now; this run did nothing")

    def _start(self) -> Lease:
        if not getattr(self, "_heartbeat_on", True):
            return self
        self._thread = threading.Thread(target=self._heartbeat, name="backup-lease", daemon=True)
        self._thread.start()
        return self

    def _heartbeat(self) -> None:
        interval = max(self.ttl / 3, 0.5)
        while not self._stop.wait(interval):
            try:
                self.renew()
            except PreconditionFailed:
                log.error("backup run %s lost its lease to another run; stopping", self.run_id)
                self.lost.set()
                return
            except Exception as exc:  # transient: try again next beat, unless it has run out
                log.warning("backup lease renewal failed (%s); retrying", type(exc).__name__)
            if time.time() >= self.expires:
                log.error("backup run %s could not renew its lease before it expired; stopping", self.run_id)
                self.lost.set()
                return

    def renew(self) -> None:
        expires = time.time() + self.ttl
        try:
            self._write(expires, if_match=self.etag)
        except PreconditionFailed:
            if not self._mine_after_conflict(expires):
                raise

    def release(self) -> None:
        """Stop renewing and mark the lease expired (only if it is still ours)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=min(self.ttl, 5))
            if self._thread.is_alive():  # a renewal is stuck: writing now could race it
                log.warning("backup run %s left its lease to expire (a renewal is still pending)", self.run_id)
                return
        if self.lost.is_set() or self.etag is None:
            return
        try:
            self._write(time.time() - 1, if_match=self.etag, released=True)
        except CrossCloudError as exc:  # it expires on its own; the next run takes it over then
            log.warning("backup run %s could not release its lease: %s", self.run_id, exc.message)

    def end_if_mine(self) -> bool:
        """Mark the lease released if it still names this run (from any process); True if it did."""
        seen = self._read()
        if seen is None or seen.run_id != self.run_id or seen.released:
            return False
        try:
            self._write(time.time() - 1, if_match=seen.etag, released=True)
        except PreconditionFailed:
            return False
        return True
