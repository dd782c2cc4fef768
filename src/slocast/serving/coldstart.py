"""The model an llm-d prediction server uses before any bundle exists.

llm-d requires predictions > 0 and ``/readyz`` 200 from the first second. This prior is a
deliberately simple, physically shaped guess -- prefill work grows with the prompt and with
what is queued ahead of it, decode time with the batch being decoded -- so a router using it
before the first retrain behaves sensibly (more load, larger bounds). It is replaced by the
first trained bundle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import numpy as np
import pandas as pd

from slocast.models.base import Bounds

__all__ = ["COLD_START_VERSION", "ColdStartLatency"]

COLD_START_VERSION = "cold-start"


def _column(records: Sequence[Mapping[str, object]], name: str) -> np.ndarray:
    return np.array([float(r.get(name) or 0.0) for r in records])  # type: ignore[arg-type]


class ColdStartLatency:
    """Prior TTFT / TPOT bounds (ms) from queue state; ``target`` is ``"ttft"`` or ``"tpot"``."""

    version = COLD_START_VERSION

    def __init__(self, target: str, coverage: float) -> None:
        self.target = target
        self.coverage = coverage

    def predict_matrix(
        self,
        records: Sequence[Mapping[str, object]],
        coverage: float | None = None,
        upper_only: bool = False,
    ) -> Bounds:
        # The prior is arithmetic on a few columns: the point costs nothing, so it is kept.
        tokens = _column(records, "input_token_length")
        waiting = _column(records, "num_request_waiting")
        running = _column(records, "num_request_running")
        if self.target == "ttft":
            prefill = tokens + _column(records, "prefill_tokens_in_flight")
            point = 50.0 + 0.1 * prefill * (1.0 + waiting)
        else:
            point = 20.0 + 0.5 * running + 0.001 * _column(records, "decode_tokens_in_flight")
        # A wide prior: twice the point, never below it.
        return Bounds(point, 2.0 * point)

    def predict_frame(self, frame: pd.DataFrame, coverage: float | None = None) -> Bounds:
        records = cast(list[dict[str, object]], frame.to_dict("records"))
        return self.predict_matrix(records, coverage)
