"""What a run did: the summary (one JSON line at the end), the same as Prometheus metrics for a
Pushgateway, and a progress bar on a terminal."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from typing import TextIO

import orjson
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

VACUUM_NOTE = (
    "rows removed free space inside state_groups_state for new rows; the files shrink only after "
    "VACUUM FULL state_groups_state (an exclusive lock: at a quiet time) or pg_repack"
)


@dataclass
class Summary:
    rooms: int = 0
    chunks: int = 0
    groups: int = 0  # examined
    rewritten: int = 0
    unchanged: int = 0
    verified: int = 0
    verification_failures: int = 0
    skipped: int = 0  # vanished, pending deletion, locked or in conflict: left as they were
    rows_before: int = 0  # of the groups examined
    rows_after: int = 0
    table_bytes_before: int = 0
    table_bytes_after: int = 0
    seconds: float = 0.0
    dry_run: bool = False
    interrupted: bool = False
    finished: bool = False  # no uncompressed groups left (for the rooms asked for)
    note: str = VACUUM_NOTE

    @property
    def rows_saved(self) -> int:
        return self.rows_before - self.rows_after

    def line(self) -> str:
        fields = asdict(self)
        fields["rows_saved"] = self.rows_saved
        fields["seconds"] = round(self.seconds, 3)
        return orjson.dumps({"event": "compress_state_summary", **fields}).decode()


def push(summary: Summary, url: str, job: str, exit_code: int) -> None:
    """The run as gauges under `job` (a Pushgateway keeps the last push: one series per job)."""
    registry = CollectorRegistry()

    def gauge(name: str, documentation: str, value: float) -> None:
        Gauge(f"compress_state_{name}", documentation, registry=registry).set(value)

    gauge("groups", "State groups examined in the last run", summary.groups)
    gauge("groups_rewritten", "State groups rewritten (and verified) in the last run", summary.rewritten)
    gauge(
        "groups_skipped",
        "State groups left as they were (vanished, pending deletion, locked)",
        summary.skipped,
    )
    gauge("verification_failures", "Rewrites rolled back because the state would have changed",
          summary.verification_failures)  # fmt: skip
    gauge("rows_before", "state_groups_state rows of the examined groups before the run", summary.rows_before)
    gauge("rows_after", "state_groups_state rows of the examined groups after the run", summary.rows_after)
    gauge("rows_saved", "state_groups_state rows removed by the last run", summary.rows_saved)
    gauge(
        "table_bytes", "Size of state_groups_state with its indexes after the run", summary.table_bytes_after
    )
    gauge("duration_seconds", "How long the last run took", summary.seconds)
    gauge("exit_code", "The last run's exit code (0 done, 1 verification failure)", exit_code)
    gauge("last_run_timestamp_seconds", "When the last run ended", time.time())
    if exit_code == 0:
        gauge("last_success_timestamp_seconds", "When a run last ended without failure", time.time())
    push_to_gateway(url, job=job, registry=registry, timeout=10)


class ProgressBar:
    """Chunks done of the run's budget, rewritten groups and rows saved, redrawn in place."""

    def __init__(self, total: int, stream: TextIO = sys.stderr, width: int = 30) -> None:
        self.total, self.stream, self.width = total, stream, width

    def update(self, summary: Summary) -> None:
        filled = min(self.width, self.width * summary.chunks // max(self.total, 1))
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r[{bar}] {summary.chunks}/{self.total} chunks, {summary.groups} groups,"
                          f" {summary.rows_saved} rows saved\x1b[K")  # fmt: skip
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()
