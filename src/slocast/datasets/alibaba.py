"""Alibaba GenAI serving request trace (``lora_request_trace.csv``, SoCC'25).

Target: ``exec_time_seconds`` of successful requests. Requests are grouped by base model
(``checkpoint_model_version_id``); the outcome is known when execution ends.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from slocast.datasets._io import (
    Dataset,
    finish,
    numeric_column,
    read_table,
    require_columns,
    require_values,
)
from slocast.datasets.units import parse_timestamp_s
from slocast.schema import get_domain

__all__ = ["load_alibaba_lora"]


def load_alibaba_lora(path: Path) -> Dataset:
    spec = get_domain("serving-latency")
    raw = read_table(path)
    require_columns(raw, [*spec.features, spec.target, "gmt_create", "predict_status"], path)
    frame = pd.DataFrame(index=raw.index)
    for column in spec.numeric:
        frame[column] = numeric_column(raw, column, path)
    for column in spec.categorical:
        frame[column] = raw[column].str.strip().replace({"": pd.NA})
    frame[spec.target] = numeric_column(raw, spec.target, path)
    require_values(frame[spec.target], spec.target, path)
    frame[spec.time] = numeric_column(raw, "gmt_create", path, parse_timestamp_s)
    frame[spec.known_at] = frame[spec.time] + frame[spec.target].fillna(0)
    succeeded = raw["predict_status"].str.strip() == "SUCCEED"
    positive = frame[spec.target] > 0
    dropped = {
        "not_succeeded": int((~succeeded).sum()),
        "target_not_positive": int((succeeded & ~positive).sum()),
    }
    return finish(frame[succeeded & positive], spec, path, len(raw), dropped)
