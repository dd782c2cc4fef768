"""The data plane's two ways into the llm-d models: per-job dicts and decoded rows."""

from __future__ import annotations

import json
import time

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


def _created_series(plane: DataPlane) -> dict[str, float]:
    """The ``slocast_model_created_timestamp_seconds`` series of ``/metrics``, by domain."""
    prefix = 'slocast_model_created_timestamp_seconds{domain="'
    return {
        line[len(prefix) :].split('"')[0]: float(line.split()[-1])
        for line in plane.metrics.render().decode().splitlines()
        if line.startswith(prefix)
    }


def test_metrics_say_when_the_served_bundles_were_written(
    llmd_bundles: list[ModelBundle],
) -> None:
    """What an alert compares with the trainer's current bundle: the cold-start model has no
    bundle and no series; a swap moves the series to the new bundle's write time."""
    plane = DataPlane()
    assert _created_series(plane) == {}
    ttft, tpot = llmd_bundles
    assert plane.swap(ttft)
    assert _created_series(plane) == {"llm-ttft": ttft.created_at.timestamp()}
    plane.swap(tpot)
    written = {b.spec.name: b.created_at.timestamp() for b in llmd_bundles}
    assert _created_series(plane) == written
    assert DataPlane(llmd_bundles).metrics.render().count(b"created_timestamp_seconds{") == 2
    assert all(time.time() - 3600 < t <= time.time() for t in written.values())
