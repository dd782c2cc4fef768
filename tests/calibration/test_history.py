"""The history expert: its offsets, the per-group choice against the model, its state."""

from __future__ import annotations

import numpy as np

from slocast.calibration.aci import AdaptiveConformal
from slocast.calibration.conformal import ConformalUpper
from slocast.calibration.history import HistoryExpert


def expert(prior: float = 20.0) -> HistoryExpert:
    return HistoryExpert("h", ConformalUpper(10, 500), prior=prior, aci=AdaptiveConformal(0.9))


def record(e: HistoryExpert, group: str, y: float, model: float, history: float, n: int) -> None:
    e.record([group] * n, np.full(n, y), np.full(n, model), np.full(n, history))


def test_each_group_is_served_the_bound_that_cost_less_on_its_own_jobs() -> None:
    e = expert()
    # "steady" jobs: history covers with 10 % to spare, the model with 100 %.
    record(e, "steady", 10.0, 20.0, 11.0, 20)
    # "erratic" jobs: history misses every other one, the model covers with 20 % to spare.
    for _ in range(10):
        record(e, "erratic", 10.0, 12.0, 11.0, 1)
        record(e, "erratic", 10.0, 12.0, 9.0, 1)
    chosen = e.prefers_history(np.array(["steady", "erratic"], dtype=object))
    assert chosen.tolist() == [True, False]


def test_a_new_group_follows_what_the_pool_says_for_a_group_of_its_size() -> None:
    """History misses more than the model across the pool but wastes far less. For a group of
    small jobs the waste is negligible in the business score and the misses decide; for a group
    of large jobs the waste decides."""
    e = expert()
    for _ in range(50):  # pool: one job in five missed by history; the model wastes 3x
        record(e, "pool", 100.0, 400.0, 110.0, 4)
        record(e, "pool", 100.0, 400.0, 90.0, 1)
    # Two groups, one finished job each, on which both bounds cost the same (equal excess).
    record(e, "tiny", 1.0, 1.5, 1.5, 1)
    record(e, "huge", 1000.0, 1500.0, 1500.0, 1)
    chosen = e.prefers_history(np.array(["tiny", "huge"], dtype=object))
    assert chosen.tolist() == [False, True]
    assert not expert().prefers_history(np.array(["anyone"], dtype=object)).any()  # no record


def test_thin_groups_take_the_offsets_of_groups_as_young() -> None:
    """A group's first scores (its history is one or two outcomes) run larger than its later
    ones; a new group's offset comes from other groups' first scores, not the whole pool."""
    e = expert()
    rng = np.random.default_rng(0)
    for g in range(60):
        first = rng.normal(1.0, 0.1, size=3)  # held 0, 1, 2 scores: youth bins 0 and 1
        later = rng.normal(-0.5, 0.1, size=60)
        e.update(np.concatenate([first, later]), [f"g{g}"] * 63)
    young, old = e.offsets(np.array(["new", "g0"], dtype=object), 0.9)
    assert young > 0.9  # the first scores' quantile
    assert -0.5 < old < 0.0  # g0 holds 63 scores: its own window, 95 % of them later ones
    pooled = e.calibrator.offsets(np.array(["new"], dtype=object), 0.9)[0]
    assert pooled < young  # the plain pool, mostly later scores, would promise too much


def test_state_round_trip_keeps_offsets_choices_and_level() -> None:
    e = expert()
    rng = np.random.default_rng(1)
    e.update(rng.normal(size=200), [f"g{i % 7}" for i in range(200)])
    record(e, "g1", 10.0, 20.0, 11.0, 15)
    record(e, "g2", 10.0, 11.0, 9.0, 15)
    assert e.aci is not None
    e.aci.update([True, True, False])
    again = HistoryExpert.from_state(e.state(), 0.9)
    groups = np.array(["g1", "g2", "g3", "new"], dtype=object)
    np.testing.assert_array_equal(again.prefers_history(groups), e.prefers_history(groups))
    np.testing.assert_allclose(again.offsets(groups, 0.9), e.offsets(groups, 0.9))
    assert again.aci is not None and again.aci.level == e.aci.level
    assert again.level_for(None, 0.9) == e.level_for(None, 0.9) > 0.9


def test_reset_forgets_scores_records_and_level() -> None:
    e = expert()
    e.update(np.ones(20), ["a"] * 20)
    record(e, "a", 10.0, 20.0, 11.0, 5)
    assert e.aci is not None
    e.aci.update([True] * 5)
    e.reset()
    assert not e.ready and not e.prefers_history(np.array(["a"], dtype=object)).any()
    assert e.aci is not None and e.aci.level == 0.9
