"""Nextflow task traces (``trace.txt`` / CSV exports, raw or human-readable units).

Target: ``peak_rss`` in bytes. The requested ``memory`` is the user's request (and a feature:
it is known at submit time). ``process`` is the group. The outcome is known at ``complete``.
Only tasks that ran to completion are outcomes (``status`` COMPLETED, or CACHED: a result reused
from an earlier run, with that run's record): a FAILED task's peak is cut short by whatever ended
it -- for a task killed at its memory limit, the peak says less than the task needed. A trace
with no memory request at all (no ``memory`` directive) keeps its tasks, without a request.

Nextflow's default trace fields carry neither ``process``, ``cpus`` nor ``memory``: in such a
trace the process is the task ``name`` without its tag (``ALIGN (sample1)`` -> ``ALIGN``), and
the missing request and CPU count are simply not there.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from slocast.datasets._io import (
    Dataset,
    finish,
    numeric_column,
    read_table,
    request_mask,
    require_columns,
    require_values,
)
from slocast.datasets.history import add_group_history
from slocast.datasets.units import parse_duration_s, parse_size, parse_timestamp_s
from slocast.schema import get_domain

__all__ = ["load_nextflow"]

FINISHED = frozenset({"COMPLETED", "CACHED"})
# Every status Nextflow writes; a column holding none of them is not Nextflow's and is ignored.
STATUSES = FINISHED | {"NEW", "SUBMITTED", "RUNNING", "FAILED", "ABORTED"}
# The tag Nextflow appends to a task's name: "NFCORE_RNASEQ:FASTQC (SRR1_1)". A process name
# holds no parenthesis, so the tag runs from the first one to the end (tags may nest them).
TAG = r"\s*\(.*\)\s*$"


def load_nextflow(path: Path) -> Dataset:
    spec = get_domain("task-memory")
    raw = read_table(path)
    require_columns(raw, ["process" if "name" not in raw else "name", "peak_rss", "submit"], path)
    frame = pd.DataFrame(index=raw.index)
    process = raw["process"] if "process" in raw else raw["name"].str.replace(TAG, "", regex=True)
    frame["process"] = process.str.strip().replace({"": pd.NA, "-": pd.NA})
    nan = pd.Series(float("nan"), index=raw.index)
    frame["cpus"] = numeric_column(raw, "cpus", path) if "cpus" in raw else nan
    frame["memory"] = numeric_column(raw, "memory", path, parse_size) if "memory" in raw else nan
    frame["peak_rss"] = numeric_column(raw, "peak_rss", path, parse_size)
    frame["rchar"] = numeric_column(raw, "rchar", path, parse_size) if "rchar" in raw else nan
    # A task retried (`maxRetries`) after running out is recorded once, with its last attempt.
    frame["attempt"] = numeric_column(raw, "attempt", path) if "attempt" in raw else nan
    frame["time_limit"] = (
        numeric_column(raw, "time", path, parse_duration_s) if "time" in raw else nan
    )
    frame[spec.time] = numeric_column(raw, "submit", path, parse_timestamp_s)
    require_values(frame["peak_rss"], "peak_rss", path)
    require_values(frame[spec.time], "submit", path)
    complete = (
        numeric_column(raw, "complete", path, parse_timestamp_s) if "complete" in raw else nan
    )
    # Without a completion time, the task has ended by submit + its duration at the latest.
    duration = numeric_column(raw, "duration", path, parse_duration_s) if "duration" in raw else nan
    frame[spec.known_at] = complete.fillna(frame[spec.time] + duration).fillna(frame[spec.time])
    has_target = frame["peak_rss"] > 0
    spec, has_request = request_mask(spec, frame["memory"] > 0)  # no `memory` directive: none
    has_time = frame[spec.time].notna()
    status = raw["status"].str.strip().str.upper() if "status" in raw else None
    finished = (
        status.isin(FINISHED)
        if status is not None and status.isin(STATUSES).any()
        else pd.Series(True, index=raw.index)
    )
    dropped = {
        "not_completed": int((~finished).sum()),
        "missing_peak_rss": int((finished & ~has_target).sum()),
        "missing_request": int((finished & has_target & ~has_request).sum()),
        "missing_submit": int((finished & has_target & has_request & ~has_time).sum()),
    }
    kept = finished & has_target & has_request & has_time
    frame, spec = add_group_history(frame[kept], spec, "process", size="rchar")
    return finish(frame, spec, path, len(raw), dropped)
