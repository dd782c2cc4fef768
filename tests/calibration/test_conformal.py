"""Statistical and lifecycle tests of split CQR with signed one-sided scores."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slocast.calibration import ConformalUpper, conformal_quantile
from slocast.errors import LifecycleError
from slocast.schema import POOLED


def _binomial_tolerance(n: int, p: float, sigmas: float = 4.0) -> float:
    return sigmas * np.sqrt(p * (1 - p) / n)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    coverage=st.sampled_from([0.8, 0.9, 0.95]),
    scale=st.floats(0.1, 10.0),
    skew=st.booleans(),
)
def test_coverage_on_exchangeable_data(
    seed: int, coverage: float, scale: float, skew: bool
) -> None:
    rng = np.random.default_rng(seed)
    n_cal, n_test = 1000, 4000
    noise = rng.lognormal(0, 1, n_cal + n_test) if skew else rng.normal(0, 1, n_cal + n_test)
    y = scale * noise
    upper_hat = np.zeros_like(y)  # a deliberately bad model: calibration must fix it
    cal = ConformalUpper().conformalize(y[:n_cal] - upper_hat[:n_cal])
    bound = upper_hat[n_cal:] + cal.offset(coverage)
    achieved = float(np.mean(y[n_cal:] <= bound))
    # Split conformal: E[coverage] in [q, q + 1/(n+1)]; plus test-sample noise.
    assert achieved >= coverage - _binomial_tolerance(n_test, coverage) - 0.02
    assert achieved <= coverage + 1 / (n_cal + 1) + _binomial_tolerance(n_test, coverage) + 0.02


@settings(max_examples=40, deadline=None)
@given(
    scores=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=300),
    q1=st.floats(0.5, 0.99),
    q2=st.floats(0.5, 0.99),
)
def test_offsets_are_monotone_in_coverage(scores: list[float], q1: float, q2: float) -> None:
    cal = ConformalUpper().conformalize(np.array(scores))
    lo, hi = sorted((q1, q2))
    assert cal.offset(lo) <= cal.offset(hi)


def test_signed_scores_give_one_sided_bounds() -> None:
    # An over-wide model: every score negative. The offset shrinks the bound instead of widening.
    cal = ConformalUpper().conformalize(-np.linspace(1, 2, 100))
    assert cal.offset(0.9) < 0


def test_conformal_quantile_rank() -> None:
    scores = np.arange(1.0, 101.0)
    assert conformal_quantile(scores, 0.9) == 91.0  # ceil(101 * 0.9) = 91st smallest
    with pytest.raises(ValueError):
        conformal_quantile(scores, 1.0)


def test_mondrian_groups_get_their_own_offsets_with_fallback() -> None:
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(0, 1, 500), rng.normal(5, 1, 500), rng.normal(0, 1, 5)])
    groups = np.array(["a"] * 500 + ["b"] * 500 + ["thin"] * 5)
    cal = ConformalUpper(min_group_size=30).conformalize(scores, groups)
    off = cal.offsets(np.array(["a", "b", "thin", "unseen"]), 0.9)
    assert off[0] == pytest.approx(1.28, abs=0.2)
    assert off[1] == pytest.approx(6.28, abs=0.2)
    assert off[2] == off[3] == cal.offset(0.9)  # thin and unseen groups use the pooled scores


def test_window_follows_drift() -> None:
    cal = ConformalUpper(window=100).conformalize(np.zeros(100))
    assert cal.offset(0.9) == 0.0
    cal.update(np.full(100, 3.0))
    assert cal.offset(0.9) == 3.0


def test_lifecycle_is_guarded() -> None:
    cal = ConformalUpper()
    with pytest.raises(LifecycleError, match="before conformalize"):
        cal.offset(0.9)
    with pytest.raises(LifecycleError, match="before conformalize"):
        cal.update(np.zeros(3))
    with pytest.raises(LifecycleError):
        cal.conformalize(np.zeros(0))


def test_state_round_trip() -> None:
    rng = np.random.default_rng(1)
    cal = ConformalUpper(min_group_size=10).conformalize(
        rng.normal(size=200), rng.choice(["x", "y"], 200)
    )
    restored = ConformalUpper.from_state(cal.state(), 10)
    for group in ("x", "y", "z"):
        assert restored.offset(0.9, group) == cal.offset(0.9, group)


def test_exceedance_is_the_share_of_scores_at_or_above() -> None:
    cal = ConformalUpper(min_group_size=5).conformalize(np.arange(1.0, 11.0))
    got = cal.exceedance(np.array([10.0, 0.0, 10.5, 5.5]), [POOLED] * 4)
    np.testing.assert_allclose(got, [2 / 11, 11 / 11, 1 / 11, 6 / 11])


def test_decayed_scores_let_an_offset_come_down_after_a_change() -> None:
    """Errors shrink (a calmer regime): unweighted, the 90 % offset stays at the old level
    while a tenth of the window still holds old scores; with age weights it follows."""
    rng = np.random.default_rng(3)
    offsets = {}
    for decay in (1.0, 0.99):
        cal = ConformalUpper(window=500, decay=decay).conformalize(3.0 + rng.normal(size=500))
        cal.update(rng.normal(size=300))
        offsets[decay] = cal.offset(0.9)
    new_regime = 1.28  # the 90 % quantile of the new scores
    assert abs(offsets[0.99] - new_regime) < 0.4
    assert offsets[1.0] - new_regime > 1.0


def test_decayed_quantile_keeps_its_properties() -> None:
    rng = np.random.default_rng(4)
    scores = rng.normal(size=300)
    levels = [conformal_quantile(scores, c, 0.99) for c in (0.5, 0.8, 0.9, 0.95)]
    assert levels == sorted(levels)  # monotone in the coverage asked
    # On steady data the weights change little: the same coverage on fresh scores.
    fresh = rng.normal(size=20_000)
    assert np.mean(fresh <= conformal_quantile(scores, 0.9, 0.99)) == pytest.approx(0.9, abs=0.05)
    with pytest.raises(ValueError, match="decay"):
        conformal_quantile(scores, 0.9, 0.0)


def test_weighted_exceedance_matches_the_quantile() -> None:
    """A score's exceedance is the largest miscoverage whose offset still covers it, with age
    weights as without."""
    rng = np.random.default_rng(5)
    cal = ConformalUpper(decay=0.98).conformalize(rng.normal(size=200))
    for score in rng.normal(size=20):
        alpha = float(cal.exceedance(np.array([score]), [POOLED])[0])
        assert cal.offset(1.0 - alpha + 1e-6) >= score  # a little less miscoverage: covered
        if alpha < 1.0:
            assert cal.offset(1.0 - alpha - 1e-6) < score  # a little more: not


def test_decay_round_trips() -> None:
    cal = ConformalUpper(decay=0.95).conformalize(np.arange(100.0))
    restored = ConformalUpper.from_state(cal.state(), 30, 2000, 0.95)
    assert (
        restored.offset(0.9)
        == cal.offset(0.9)
        != ConformalUpper.from_state(cal.state()).offset(0.9)
    )


def _two_sized_group(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(levels, scores) of one group whose jobs come in two sizes: where the model predicts the
    small size (level 0), 30 % of the jobs run the large size (score +5); where it predicts
    the large size (level 5), its quantile holds."""
    levels = rng.choice([0.0, 5.0], n)
    scores = rng.normal(-0.5, 0.3, n)
    long_run = (levels == 0.0) & (rng.random(n) < 0.3)
    scores[long_run] += 5.0
    return levels, scores


def test_level_cells_keep_a_small_size_miss_off_the_jobs_predicted_large() -> None:
    rng = np.random.default_rng(6)
    levels, scores = _two_sized_group(rng, 2000)
    groups = np.array(["user"] * len(scores))
    one = ConformalUpper(min_group_size=30, level_bins=1).conformalize(scores, groups, levels)
    cells = ConformalUpper(min_group_size=30, level_bins=3).conformalize(scores, groups, levels)
    new_levels, new_scores = _two_sized_group(rng, 20_000)
    new_groups = np.array(["user"] * len(new_scores))
    for cal in (one, cells):  # both keep the promise over the group as a whole
        covered = new_scores <= cal.offsets(new_groups, 0.9, new_levels)
        assert covered.mean() == pytest.approx(0.9, abs=0.03)
    large = new_levels == 5.0
    cell_offsets = cells.offsets(new_groups, 0.9, new_levels)
    # Only the level cells keep the promise where the model predicts each size ...
    for where in (large, ~large):
        assert (new_scores[where] <= cell_offsets[where]).mean() == pytest.approx(0.9, abs=0.03)
    # ... and the jobs predicted large no longer carry the small-size jobs' 5-unit misses.
    assert cell_offsets[large].max() < 0.5 < one.offsets(new_groups, 0.9, new_levels)[large].min()


def test_level_cells_fall_back_group_then_pooled_cell_then_pooled() -> None:
    rng = np.random.default_rng(7)
    levels = np.concatenate([np.zeros(300), np.ones(300), np.zeros(40), np.ones(5)])
    scores = np.concatenate([rng.normal(0, 1, 300), rng.normal(4, 1, 300), rng.normal(-3, 1, 45)])
    groups = np.array(["big"] * 600 + ["mid"] * 45)
    cal = ConformalUpper(min_group_size=30, level_bins=2).conformalize(scores, groups, levels)
    assert cal.level_edges.size == 1
    probe = np.array(["big", "big", "mid", "mid", "unseen", "unseen"])
    off = cal.offsets(probe, 0.9, np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0]))
    assert off[1] - off[0] > 3.0  # the big group's two cells
    # "mid" has 40 scores at level 0 (its own cell) but 5 at level 1: its whole group serves.
    assert off[2] == pytest.approx(-3.0 + 1.28, abs=0.5)
    assert off[3] == cal.offset(0.9, "mid")
    # An unseen group takes the pooled cell of its level, not the pool of all levels.
    assert off[4] < cal.offset(0.9) < off[5]
    restored = ConformalUpper.from_state(cal.state(), 30, 2000, 1.0, cal.level_edges)
    np.testing.assert_array_equal(
        restored.offsets(probe, 0.9, np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0])), off
    )
    assert restored.groups == cal.groups == ["big", "mid"]


def test_a_domain_without_groups_holds_each_score_once() -> None:
    # Jobs of a domain without a group column all key to the pool: one window, one copy each.
    cal = ConformalUpper(window=100).conformalize(np.arange(60.0), [POOLED] * 60)
    assert cal.count(POOLED) == 60
    cal.update(np.arange(60.0, 120.0), [POOLED] * 60)
    assert list(cal.state()[POOLED]) == list(np.arange(20.0, 120.0))


def test_level_cells_keep_bounds_monotone_in_the_models_level() -> None:
    """A cell whose offset is smaller than the one below it would rank a job predicted a
    little larger under one predicted a little smaller; bounds never step down."""
    rng = np.random.default_rng(8)
    levels = rng.uniform(0.0, 3.0, 3000)
    # Misses of up to 2 units below level 1, a tight model above it.
    scores = np.where(levels < 1.0, rng.uniform(-0.2, 2.0, 3000), rng.normal(0.0, 0.05, 3000))
    groups = np.array(["g"] * 3000)
    cal = ConformalUpper(level_bins=3).conformalize(scores, groups, levels)
    grid = np.linspace(0.0, 3.0, 601)
    bounds = grid + cal.offsets(np.array(["g"] * len(grid)), 0.9, grid)
    assert (np.diff(bounds) >= 0).all()
    # The floor only lifts bounds: each cell still covers its own jobs.
    fresh = rng.uniform(0.0, 3.0, 20_000)
    fresh_scores = np.where(
        fresh < 1.0, rng.uniform(-0.2, 2.0, 20_000), rng.normal(0, 0.05, 20_000)
    )
    covered = fresh_scores <= cal.offsets(np.array(["g"] * len(fresh)), 0.9, fresh)
    for low, high in ((0.0, 1.0), (1.0, 2.0), (2.0, 3.0)):
        inside = (fresh >= low) & (fresh < high)
        assert covered[inside].mean() >= 0.88


def test_one_job_gets_the_offset_it_gets_in_a_batch() -> None:
    # Serving takes a float-only path for a single job; it must agree with the batch path.
    rng = np.random.default_rng(9)
    levels, scores = rng.uniform(0.0, 3.0, 2000), rng.normal(size=2000)
    groups = rng.choice(["a", "b"], 2000)
    cal = ConformalUpper(level_bins=3).conformalize(scores, groups, levels)
    probe_groups = np.array(["a", "b", "unseen"] * 40)
    probe_levels = rng.uniform(-1.0, 4.0, len(probe_groups))
    batch = cal.offsets(probe_groups, 0.9, probe_levels)
    one_by_one = [
        cal.offsets(probe_groups[i : i + 1], 0.9, probe_levels[i : i + 1])[0]
        for i in range(len(probe_groups))
    ]
    np.testing.assert_array_equal(batch, one_by_one)
