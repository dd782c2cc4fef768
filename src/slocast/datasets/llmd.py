"""llm-d latency-predictor traces (JSON lines, one TTFT or TPOT sample per row).

The router records a TTFT sample with ``actual_tpot_ms == 0`` and a TPOT sample with
``actual_ttft_ms == 0``; rows whose target is zero belong to the other target and are dropped.
The traces carry no timestamps: the row order is the order samples were recorded, so the row
index is the time axis and an outcome counts as known from the next row on.
"""

from __future__ import annotations

from pathlib import Path

from slocast.datasets._io import (
    Dataset,
    finish,
    numeric_column,
    read_jsonl,
    require_columns,
    require_values,
)
from slocast.schema import get_domain

__all__ = ["load_llmd"]

# Optional in the trace format: zero-filled when absent (as llm-d's trace reader does).
_OPTIONAL = (
    "num_tokens_generated",
    "prefix_cache_score",
    "prefill_tokens_in_flight",
    "decode_tokens_in_flight",
)


def load_llmd(path: Path, target: str) -> Dataset:
    """Load an llm-d trace for ``target`` in ``{"ttft", "tpot"}``."""
    spec = get_domain(f"llm-{target}")
    raw = read_jsonl(path)
    for column in _OPTIONAL:
        if column not in raw.columns:
            raw[column] = 0
    if "pod_type" not in raw.columns:
        raw["pod_type"] = ""  # llm-d's default: a monolithic pod
    require_columns(raw, [*spec.numeric, spec.target], path)
    frame = raw[[*spec.numeric, *spec.categorical]].copy()
    for column in [*spec.numeric, spec.target]:
        frame[column] = numeric_column(raw, column, path)
    require_values(frame[spec.target], spec.target, path)
    frame[spec.time] = range(len(frame))
    frame[spec.known_at] = frame[spec.time] + 1
    keep = frame[spec.target] > 0
    dropped = {
        "other_target": int((frame[spec.target] == 0).sum()),
        "missing_target": int(frame[spec.target].isna().sum()),
        "negative_target": int((frame[spec.target] < 0).sum()),
    }
    return finish(frame[keep], spec, path, len(raw), dropped)
