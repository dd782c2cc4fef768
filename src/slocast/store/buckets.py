"""Retention buckets: which stratum a training row belongs to, so rare regimes survive.

llm-d's trainer keeps a capped window per (queue, KV-cache, prefix-score) bucket; evicting the
oldest rows of a full bucket keeps a few high-queue rows even when low-queue rows flood in.
Other domains are stratified by group and day.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["bucket_of", "is_heldout", "llm_bucket"]

_QUEUE_EDGES = ((0, "0"), (2, "1-2"), (5, "3-5"), (10, "6-10"))


def llm_bucket(row: Mapping[str, Any]) -> str:
    """``q{queue}:kv{5%-step}:p{quartile}`` as in llm-d's stratified training windows.

    >>> row = {"num_request_waiting": 4, "kv_cache_percentage": 0.42, "prefix_cache_score": 0.9}
    >>> llm_bucket(row)
    'q3-5:kv8:p3'
    """
    waiting = _number(row, "num_request_waiting")
    queue = next((label for edge, label in _QUEUE_EDGES if waiting <= edge), "11+")
    kv = min(19, int(_number(row, "kv_cache_percentage") * 20))
    prefix = min(3, int(_number(row, "prefix_cache_score") * 4))
    return f"q{queue}:kv{kv}:p{prefix}"


def _number(row: Mapping[str, Any], key: str) -> float:
    """The row's value for ``key``; a missing one (absent, None, NaN) counts as 0."""
    value = float(row.get(key) or 0.0)
    return 0.0 if math.isnan(value) else value


def bucket_of(domain: str, row: Mapping[str, Any], group: str | None, time_column: str) -> str:
    if domain.startswith("llm-"):
        return llm_bucket(row)
    day = row.get(time_column)
    day_label = str(math.floor(float(day) / 86400)) if isinstance(day, int | float) else "-"
    return f"{row.get(group) if group else '-'}:{day_label}"


def is_heldout(row: Mapping[str, Any], share: float) -> bool:
    """Stable held-out choice from the row's content (sha256, not Python's salted ``hash``).

    >>> is_heldout({"a": 1}, 0.1) == is_heldout({"a": 1}, 0.1)
    True
    """
    digest = hashlib.sha256(orjson.dumps(dict(row), option=orjson.OPT_SORT_KEYS)).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share
