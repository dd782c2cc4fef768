"""The model an llm-d prediction server uses before any bundle exists.

llm-d requires predictions > 0 and ``/readyz`` 200 from the first second. This prior is a
deliberately simple, physically shaped guess -- prefill work grows with the prompt and with
what is queued ahead of it, decode time with the batch being decoded -- so a router using it
before the first retrain behaves sensibly (more load, larger bounds). It is replaced by the
first trained bundle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from slocast.models.base import Bounds

__all__ = ["COLD_START_VERSION", "ColdStartLatency"]

COLD_START_VERSION = "cold-start"
# What the prior reads of a request.
PRIOR_INPUTS = (
    "input_token_length",
    "num_request_waiting",
    "num_request_running",
    "prefill_tokens_in_flight",
    "decode_tokens_in_flight",
)


class ColdStartLatency:
    """Prior TTFT / TPOT bounds (ms) from queue state; ``target`` is ``"ttft"`` or ``"tpot"``."""

    version = COLD_START_VERSION

    def __init__(self, target: str, coverage: float) -> None:
        self.target = target
        self.coverage = coverage

    def predict_columns(
        self,
        numeric: Mapping[str, np.ndarray],
        categorical: Mapping[str, Sequence[object]],
        rows: int,
        coverage: float | None = None,
        upper_only: bool = False,
    ) -> Bounds:
        """Bounds for jobs sent as columns; a missing value counts as zero."""

        def column(name: str) -> np.ndarray:
            values = numeric.get(name)
            return np.zeros(rows) if values is None else np.nan_to_num(values, nan=0.0)

        # The prior is arithmetic on a few columns: the point costs nothing, so it is kept.
        waiting, running = column("num_request_waiting"), column("num_request_running")
        if self.target == "ttft":
            prefill = column("input_token_length") + column("prefill_tokens_in_flight")
            point = 50.0 + 0.1 * prefill * (1.0 + waiting)
        else:
            point = 20.0 + 0.5 * running + 0.001 * column("decode_tokens_in_flight")
        # A wide prior: twice the point, never below it.
        return Bounds(point, 2.0 * point)

    def predict_matrix(
        self,
        records: Sequence[Mapping[str, object]],
        coverage: float | None = None,
        upper_only: bool = False,
    ) -> Bounds:
        numeric = {n: np.array([_number(r.get(n)) for r in records]) for n in PRIOR_INPUTS}
        return self.predict_columns(numeric, {}, len(records), coverage)


def _number(value: object) -> float:
    return float(value or 0.0)  # type: ignore[arg-type]
