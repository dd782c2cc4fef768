"""The share of its request that a group never seen is served (calibration/unseen.py)."""

from __future__ import annotations

import numpy as np
import pytest

from slocast.calibration.unseen import UnseenShare


def test_the_unseen_share_covers_new_groups_at_the_promised_rate() -> None:
    """Groups whose largest share varies widely (log-normal): with 9 groups seen, the share
    served to a tenth (the largest of theirs) covers it when it is not the largest of the
    ten: in 90 % of draws exactly."""
    rng = np.random.default_rng(1)
    covered = []
    for _ in range(4000):
        shares = np.exp(rng.normal(-2.0, 1.0, 10))
        unseen = UnseenShare({f"g{i}": s for i, s in enumerate(shares[:9])})
        covered.append(shares[9] <= unseen.share(0.9))
    assert np.mean(covered) == pytest.approx(0.9, abs=0.015)  # 3 standard errors


def _pipeline(pairs: int) -> UnseenShare:
    """A run whose ``pairs`` programs each ran under two subworkflows, the second needing up to
    1.5x the share the first did, and one memory-hungry program (0.8 of its request)."""
    unseen = UnseenShare(separator=":")
    for k in range(pairs):
        first = 0.01 * (k + 1)
        unseen.record(np.array([f"RUN:ALIGN:TOOL{k}"]), np.array([first]))
        unseen.record(np.array([f"RUN:QC:TOOL{k}"]), np.array([first * (1.0 + k / (2 * pairs))]))
    unseen.record(np.array(["RUN:INDEX"]), np.array([0.8]))
    return unseen


def test_a_program_run_elsewhere_is_sized_from_that_run() -> None:
    unseen = _pipeline(pairs=9)
    assert unseen.program("RUN:QC:TOOL3") == "TOOL3"
    assert len(unseen.sibling_at_start) == 9  # each second run started with its sibling known
    ratio = 1.0 + 8 / 18  # the largest of the nine second-to-first ratios
    # A third subworkflow running TOOL2: its siblings needed at most 0.03 * (1 + 2/18).
    sibling = 0.03 * (1.0 + 2 / 18)
    assert unseen.share(0.9, "RUN:REPORT:TOOL2") == pytest.approx(ratio * sibling)
    # A program never run: the most any group needed, as without paths.
    assert unseen.sibling_share(0.9, "RUN:REPORT:NEWTOOL") is None
    assert unseen.share(0.9, "RUN:REPORT:NEWTOOL") == pytest.approx(0.8)
    assert unseen.share(0.9) == pytest.approx(0.8)
    # A thin group is sized from its siblings, not from itself.
    assert unseen.sibling_share(0.9, "RUN:QC:TOOL2") == pytest.approx(ratio * 0.03)


def test_a_sibling_that_used_nothing_sizes_nothing() -> None:
    unseen = _pipeline(pairs=9)
    unseen.record(np.array(["RUN:ALIGN:IDLE"]), np.array([0.0]))
    assert unseen.sibling_share(0.9, "RUN:QC:IDLE") is None
    assert unseen.share(0.9, "RUN:QC:IDLE") == pytest.approx(0.8)


def test_too_few_programs_run_twice_size_by_every_group() -> None:
    unseen = _pipeline(pairs=8)  # 8 / 9 < 0.9
    assert unseen.share(0.9, "RUN:REPORT:TOOL2") == pytest.approx(0.8)
    assert unseen.share(0.85, "RUN:REPORT:TOOL2") < 0.1  # 8 / 9 covers 0.85
    flat = UnseenShare(separator="")  # names that are not paths: no siblings
    for k in range(20):
        flat.record(np.array([f"user{k}"]), np.array([0.05]))
    assert flat.share(0.9, "user3x") == pytest.approx(0.05)
    assert not flat.sibling_at_start


def test_the_record_survives_its_state() -> None:
    unseen = _pipeline(pairs=9)
    again = UnseenShare.from_state(unseen.state(), ":")
    for group in ("RUN:REPORT:TOOL2", "RUN:REPORT:NEWTOOL", None):
        assert again.share(0.9, group) == unseen.share(0.9, group)
