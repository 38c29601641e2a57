"""What a backup or restore run reports (one JSON log line, the HTTP body, `--json`) and its progress."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

MAX_LISTED_FAILURES = 1000  # the report lists this many; `failed_count` is always exact


def utc_iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Failure:
    key: str
    reason: str


@dataclass
class BackupReport:
    run_id: str
    source: str
    destination: str
    started: str
    finished: str = ""
    dry_run: bool = False
    complete: bool = False
    stop_reason: str | None = None  # why a run stopped early ("time budget ...", "lease lost")
    copied: int = 0  # in a dry run: would be copied
    skipped: int = 0
    skipped_newer: int = 0  # restore: the destination holds other bytes than the version (left alone)
    failed_count: int = 0
    pending: int = 0  # known to need a copy, not done (budget, lease or outage stopped the run)
    pending_bytes: int = 0  # their total size: how much is left for the next run
    bytes_copied: int = 0
    duration_s: float = 0.0
    throughput_mib_s: float = 0.0
    incomplete_uploads_aborted: int = 0
    failed: list[Failure] = field(default_factory=list)

    def close(self, duration_s: float) -> None:
        """The run is over: timing, throughput, and whether it is complete (it went to the end
        of the listing with nothing failed and nothing pending)."""
        self.finished = utc_iso(dt.datetime.now(dt.UTC))
        self.duration_s = round(duration_s, 3)
        self.throughput_mib_s = round(self.bytes_copied / 2**20 / self.duration_s, 2) if self.duration_s > 0 else 0.0
        self.complete = self.stop_reason is None and self.pending == 0 and self.failed_count == 0

    @property
    def ok(self) -> bool:
        return self.complete and self.failed_count == 0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class Counters:
    """Thread-safe running totals the workers update and the progress bar reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.listed = 0
        self.done = 0
        self.bytes_moved = 0
        self.bytes_planned = 0
        self.listing = 1  # 1 while the source is still being listed (totals still grow)

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, value in deltas.items():
                setattr(self, name, getattr(self, name) + value)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"listed": self.listed, "done": self.done, "bytes_moved": self.bytes_moved,
                    "bytes_planned": self.bytes_planned, "listing": self.listing}


Progress = Callable[[dict[str, int], float], None]


def start_progress(progress: Progress | None, counters: Counters, started: float, done: threading.Event,
                   kind: str) -> threading.Thread | None:
    """Call `progress` with the counters every 0.2 s until `done`, then once more."""
    if progress is None:
        return None

    def tick() -> None:
        while not done.wait(0.2):
            progress(counters.snapshot(), time.monotonic() - started)
        progress(counters.snapshot(), time.monotonic() - started)

    thread = threading.Thread(target=tick, name=f"{kind}-progress", daemon=True)
    thread.start()
    return thread


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def render_bar(snap: dict[str, int], elapsed: float, width: int = 28) -> str:
    """`[#######.....] 120/2000+ objects  1.2 GiB/3.4 GiB  45.0 MiB/s` (`+`: still listing)."""
    total = max(snap["bytes_planned"], 1)
    fraction = min(snap["bytes_moved"] / total, 1.0) if snap["bytes_planned"] else \
        (snap["done"] / snap["listed"] if snap["listed"] else 0.0)
    filled = int(fraction * width)
    rate = snap["bytes_moved"] / elapsed / 2**20 if elapsed > 0 else 0.0
    more = "+" if snap.get("listing") else ""
    return (f"[{'#' * filled}{'.' * (width - filled)}] {snap['done']}/{snap['listed']}{more} objects  "
            f"{human_bytes(snap['bytes_moved'])}/{human_bytes(snap['bytes_planned'])}  {rate:.1f} MiB/s")


class ProgressBar:
    """A one-line progress bar on an interactive stream, redrawn in place."""

    def __init__(self, out: TextIO):
        self.out = out
        self._last = 0

    def __call__(self, snap: dict[str, int], elapsed: float) -> None:
        line = render_bar(snap, elapsed)
        self.out.write("\r" + line + " " * max(self._last - len(line), 0))
        self.out.flush()
        self._last = len(line)

    def close(self) -> None:
        if self._last:
            self.out.write("\n")
            self.out.flush()


def summary(report: BackupReport, kind: str = "backup") -> str:
    """Human-readable lines for the terminal."""
    state = "complete" if report.complete else f"INCOMPLETE ({report.stop_reason})"
    verb = "would copy" if report.dry_run else "copied"
    newer = f", skipped_newer {report.skipped_newer} (left alone)" if kind == "restore" else ""
    lines = [f"{kind} {report.run_id}{' (dry run)' if report.dry_run else ''}: {state}",
             f"  {report.source} -> {report.destination}",
             f"  {verb} {report.copied} ({human_bytes(report.bytes_copied)}), skipped {report.skipped}{newer}, "
             f"failed {report.failed_count}, pending {report.pending} ({human_bytes(report.pending_bytes)})",
             f"  {report.duration_s:.1f} s, {report.throughput_mib_s:.1f} MiB/s"]
    if report.incomplete_uploads_aborted:
        lines.append(f"  aborted {report.incomplete_uploads_aborted} incomplete upload(s) of an earlier run")
    lines += [f"  FAILED {f.key}: {f.reason}" for f in report.failed]
    if report.failed_count > len(report.failed):
        lines.append(f"  ... and {report.failed_count - len(report.failed)} more failures")
    return "\n".join(lines) + "\n"
