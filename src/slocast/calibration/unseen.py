"""How much of its request a group never seen gets: the most that any group seen needed.

A model trained on other groups says little about a new one (on nf-core rnaseq its raw bound
missed every task of a new process, which peaked at 9x it), so slocast served such a group its
whole request. How far below their requests the groups already seen ran is better evidence:
most of rnaseq's processes peak under a fifth of theirs.

Each group keeps the largest outcome / request among its finished jobs. A new group is served
the largest of those over every group seen: if groups were exchangeable, a new one would need
more with probability at most ``1 / (n + 1)``, so this holds any promise up to
``n / (n + 1)``, and with fewer groups on record the whole request serves. Groups are not
exchangeable in practice: a pipeline's later stages are other programs, and on nf-core chipseq
a quantile over the groups seen (not their maximum) served later stages too little and covered
0.72 of a 0.8 promise (0.86 with whole requests). Their maximum covered them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["UnseenShare"]


class UnseenShare:
    """Per group, the largest outcome / request of its finished jobs; :meth:`share` is the
    part of its request a group never seen is served."""

    def __init__(self, largest: Mapping[str, float] | None = None) -> None:
        self.largest = {str(g): float(v) for g, v in (largest or {}).items()}

    def record(self, groups: np.ndarray, share: np.ndarray) -> None:
        """Fold in finished jobs' groups and outcome / request (NaN or infinite where there is
        no request)."""
        finite = np.isfinite(share)
        for group, value in zip(groups[finite].tolist(), share[finite].tolist(), strict=True):
            key = str(group)
            self.largest[key] = max(self.largest.get(key, 0.0), value)

    def share(self, coverage: float) -> float:
        """The share of its request that a group never seen gets while ``coverage`` is
        promised: the largest any group needed, once ``n / (n + 1)`` reaches ``coverage``;
        1 (the whole request) before that, or where a group ran past its request.

        >>> u = UnseenShare({f"g{i}": s for i, s in enumerate(np.linspace(0.1, 0.5, 9))})
        >>> u.share(0.9)  # 9 groups: a tenth group needs more with probability 1/10
        0.5
        >>> u.share(0.95)  # that takes 19
        1.0
        """
        n = len(self.largest)
        if n == 0 or n / (n + 1) < coverage - 1e-12:
            return 1.0
        return min(1.0, max(self.largest.values()))

    def state(self) -> dict[str, float]:
        return dict(self.largest)

    @classmethod
    def from_state(cls, state: Mapping[str, float]) -> UnseenShare:
        return cls(state)
