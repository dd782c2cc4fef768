"""Bin classification families: bin counts per strategy, bumping by uncertainty, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slocast.datasets import load_dataset
from slocast.errors import ConfigError
from slocast.models.base import GBMConfig
from slocast.models.composite import BIN_STRATEGIES, bin_edges
from slocast.models.families import CLASSIFICATION_FAMILIES, load_regressor, make_regressor
from tests.conftest import SIZEY, shared_file


@pytest.fixture(scope="module")
def memory() -> tuple[np.ndarray, np.ndarray]:
    data = load_dataset(f"nextflow:{shared_file(SIZEY.format('chipseq'))}")
    frame = data.frame
    X = frame[["cpus", "memory", "rchar"]].to_numpy(np.float64)
    return X, np.log1p(frame["peak_rss"].to_numpy(np.float64))


@pytest.mark.shared_data
@pytest.mark.parametrize("strategy", BIN_STRATEGIES)
@pytest.mark.parametrize("n_bins", [3, 8, 15])
def test_strategies_give_the_asked_number_of_bins(memory, strategy: str, n_bins: int) -> None:
    _, z = memory
    edges = bin_edges(z, n_bins, strategy)
    # Empty bins are merged away: equal-width bins can fall into gaps of the distribution.
    expected = n_bins if strategy != "uniform" else int((np.histogram(z, n_bins)[0] > 0).sum())
    assert len(edges) == expected + 1
    assert np.all(np.diff(edges) > 0)
    assert edges[0] == z.min() and edges[-1] == z.max()
    counts = np.histogram(z, bins=edges)[0]
    assert (counts > 0).all()
    if strategy == "quantile":  # equal-frequency bins, up to ties in the data
        assert counts.max() <= 3 * len(z) / n_bins


@pytest.mark.parametrize("n_bins", [2, 16])
def test_bin_count_out_of_range_is_a_config_error(n_bins: int) -> None:
    with pytest.raises(ConfigError) as info:
        make_regressor("bins-forest", 0.9, GBMConfig(n_bins=n_bins))
    assert info.value.field == "n_bins"
    with pytest.raises(ConfigError):
        make_regressor("bins-forest", 0.9, GBMConfig(bin_strategy="fibonacci"))


@pytest.mark.shared_data
@pytest.mark.parametrize("family", CLASSIFICATION_FAMILIES)
def test_allocation_is_a_bin_edge_and_grows_with_the_level(
    memory, family: str, tmp_path: Path
) -> None:
    X, z = memory
    config = GBMConfig(n_estimators=40, n_bins=6, threads=1)
    low, high = (make_regressor(family, q, config, []) for q in (0.5, 0.95))
    low.fit(X, z)
    high.fit(X, z)
    edges = bin_edges(z, 6, config.bin_strategy)
    p_low, p_high = low.predict(X), high.predict(X)
    assert np.isin(p_high, edges[1:]).all()
    # A higher level bumps unsure jobs into higher bins, never lower ones.
    assert (p_high >= p_low).all() and (p_high > p_low).any()
    assert (z <= p_high).mean() > (z <= p_low).mean()
    # One fit serves every level: reading the fitted classifier at 0.5 = fitting one for 0.5.
    assert np.array_equal(high.at_quantile(0.5).predict(X), p_low)  # type: ignore[attr-defined]
    path = tmp_path / f"model{type(high).suffix}"  # type: ignore[attr-defined]
    high.save(path)
    assert np.array_equal(load_regressor(family, path, 0.95).predict(X), p_high)
