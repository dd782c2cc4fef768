"""Standard Workload Format (SWF) HPC logs, as published by the Parallel Workloads Archive.

Eighteen whitespace-separated fields per job, ``;`` comment lines in the header, ``-1`` for
"unknown". Target: run time. The user's requested time is the baseline an allocator replaces.
Only fields known at submit time become features; the outcome is known at submit + wait + run.
A log that records no requested time at all (some archive logs) keeps its jobs: run times are
still predicted, there is just no request to fall back on or compare against.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from slocast.datasets._io import Dataset, finish, read_text, request_mask, require_finite
from slocast.datasets.history import add_group_history
from slocast.errors import DataFormatError, EmptyDataError
from slocast.schema import get_domain

__all__ = ["SWF_FIELDS", "load_swf"]

SWF_FIELDS = (
    "job",
    "submit",
    "wait",
    "run_time",
    "allocated_procs",
    "avg_cpu_time",
    "used_memory",
    "requested_procs",
    "requested_time",
    "requested_memory",
    "status",
    "user",
    "group_id",
    "executable",
    "queue",
    "partition",
    "preceding_job",
    "think_time",
)


def load_swf(path: Path) -> Dataset:
    spec = get_domain("hpc-runtime")
    lines = [
        ln for ln in read_text(path).splitlines() if ln.strip() and not ln.lstrip().startswith(";")
    ]
    if not lines:
        raise EmptyDataError("file has no job lines", source=str(path))
    for number, line in enumerate(lines[:1000], start=1):
        if len(line.split()) != len(SWF_FIELDS):
            raise DataFormatError(
                f"job line {number} has {len(line.split())} fields, SWF has {len(SWF_FIELDS)}",
                field="line",
                source=str(path),
            )
    try:
        raw = pd.read_csv(
            io.StringIO("\n".join(lines)),
            sep=r"\s+",
            header=None,
            names=list(SWF_FIELDS),
            dtype="float64",
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataFormatError(f"not a valid SWF file: {exc}", source=str(path)) from exc
    for column in SWF_FIELDS:
        require_finite(raw[column], column, path)
    raw = raw.replace(-1.0, np.nan)
    ran = raw["run_time"] > 0
    spec, requested = request_mask(spec, raw["requested_time"] > 0)
    dropped = {
        "run_time_not_positive": int((~ran).sum()),
        "missing_request": int((ran & ~requested).sum()),
    }
    frame = raw[ran & requested].copy()
    for column in spec.categorical:
        # Ids are categories, not magnitudes; NaN stays missing.
        frame[column] = frame[column].map(lambda v: f"{int(v)}" if pd.notna(v) else np.nan)
    frame[spec.time] = frame["submit"]
    frame[spec.known_at] = frame["submit"] + frame["wait"].fillna(0) + frame["run_time"]
    unknown = [c for c in spec.features if frame[c].isna().all()]
    frame = frame.drop(columns=unknown)
    frame, spec = add_group_history(frame, spec.without_features(set(unknown)), "user")
    return finish(frame, spec, path, len(raw), dropped)
