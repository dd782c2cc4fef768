"""The data plane's two ways into the llm-d models: per-job dicts and decoded rows."""

from __future__ import annotations

import json

import pytest

from slocast.artifacts import ModelBundle
from slocast.serving import DataPlane, LRUCache
from slocast.serving.schemas import LatencyRows
from tests.serving.test_http import trace_rows


@pytest.mark.parametrize("trained", [False, True], ids=["cold-start", "trained"])
@pytest.mark.parametrize("cache", [0, 1000], ids=["no-cache", "cache"])
def test_decoded_rows_get_the_bounds_dicts_get(
    trained: bool, cache: int, llmd_bundles: list[ModelBundle]
) -> None:
    """Above the cache's batch limit rows are read once into columns both models share; below
    it they go through the cache as dicts. Either way: the bounds of the dict path."""
    rows = trace_rows(80)
    plane = DataPlane(llmd_bundles if trained else [], LRUCache(cache), cache_max_batch=64)
    expected = DataPlane(llmd_bundles if trained else [], LRUCache(0)).predict_llm(rows)
    for batch in (rows[:3], rows):  # under and over the cache's limit
        decoded = LatencyRows().bulk(json.dumps({"requests": batch}).encode())
        ttft, tpot, coverage = plane.predict_llm_rows(decoded)
        assert ttft == pytest.approx(expected[0][: len(batch)], rel=1e-12)
        assert tpot == pytest.approx(expected[1][: len(batch)], rel=1e-12)
        assert coverage == expected[2]
    assert len(set(expected[0])) > 40  # the rows differ, and so do their bounds
