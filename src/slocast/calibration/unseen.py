"""How much of its request a group never seen gets: the most that any group seen needed, or
that its program needed elsewhere.

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

Where group names are paths that end in the program run (``DomainSpec.group_path``: a
Nextflow process ``RNASEQ:MARK_DUPLICATES_PICARD:SAMTOOLS_STATS`` runs the module
``SAMTOOLS_STATS``, which other subworkflows run too), a group whose program ran in another
group is sized from that sibling instead: its largest share times the largest ratio, over the
groups that had a sibling on record when they started, of their own largest share to that
sibling's. The same argument over those ``m`` groups holds it up to ``m / (m + 1)``; before
that, the share above serves. The same bound serves a thin group (one with too few outcomes
for its own calibration, which otherwise keeps its request): its program's runs elsewhere
bound it as they bound a new one, and where it started with a sibling its own ratio so far is
among the ratios.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["UnseenShare"]


class UnseenShare:
    """Per group, the largest outcome / request of its finished jobs; :meth:`share` is the
    part of its request a group never seen is served."""

    def __init__(
        self,
        largest: Mapping[str, float] | None = None,
        separator: str = "",
        sibling_at_start: Mapping[str, float] | None = None,
    ) -> None:
        self.largest = {str(g): float(v) for g, v in (largest or {}).items()}
        self.separator = separator
        # Per group that had a sibling on record when its first outcome came: the siblings'
        # largest share then.
        self.sibling_at_start = {str(g): float(v) for g, v in (sibling_at_start or {}).items()}
        self._programs: dict[str, set[str]] = {}
        for group in self.largest:
            self._programs.setdefault(self.program(group), set()).add(group)

    def program(self, group: str) -> str:
        """What ``group`` runs: its name's last segment (the name itself without a path)."""
        return group.rsplit(self.separator, 1)[-1] if self.separator else group

    def _siblings_largest(self, group: str) -> float | None:
        """The largest share of the other groups that run ``group``'s program, if any."""
        if not self.separator:
            return None
        shares = [
            self.largest[g] for g in self._programs.get(self.program(group), ()) if g != group
        ]
        return max(shares) if shares else None

    def record(self, groups: np.ndarray, share: np.ndarray) -> None:
        """Fold in finished jobs' groups and outcome / request (NaN or infinite where there is
        no request)."""
        finite = np.isfinite(share)
        for group, value in zip(groups[finite].tolist(), share[finite].tolist(), strict=True):
            key = str(group)
            if key not in self.largest:
                sibling = self._siblings_largest(key)
                if sibling is not None and sibling > 0.0:
                    self.sibling_at_start[key] = sibling
                self._programs.setdefault(self.program(key), set()).add(key)
            self.largest[key] = max(self.largest.get(key, 0.0), value)

    def sibling_share(self, coverage: float, group: str) -> float | None:
        """The share of its request that ``group`` gets from its program's runs in other
        groups while ``coverage`` is promised; None where its program ran nowhere else or too
        few groups started with a sibling for that promise."""
        sibling = self._siblings_largest(group)
        m = len(self.sibling_at_start)
        # A sibling that used none of its request says nothing of how much this group needs.
        if sibling is None or sibling <= 0.0 or m / (m + 1) < coverage - 1e-12:
            return None
        ratio = max(self.largest[g] / s for g, s in self.sibling_at_start.items())
        return min(1.0, ratio * sibling)

    def share(self, coverage: float, group: str | None = None) -> float:
        """The share of its request that ``group``, never seen, gets while ``coverage`` is
        promised: :meth:`sibling_share` where there is one, otherwise the largest any group
        needed, once ``n / (n + 1)`` reaches ``coverage`` (1, the whole request, before that,
        or where a group ran past its request).

        >>> u = UnseenShare({f"g{i}": s for i, s in enumerate(np.linspace(0.1, 0.5, 9))})
        >>> u.share(0.9)  # 9 groups: a tenth group needs more with probability 1/10
        0.5
        >>> u.share(0.95)  # that takes 19
        1.0
        """
        sibling = None if group is None else self.sibling_share(coverage, group)
        if sibling is not None:
            return sibling
        n = len(self.largest)
        if n == 0 or n / (n + 1) < coverage - 1e-12:
            return 1.0
        return min(1.0, max(self.largest.values()))

    def state(self) -> dict[str, Any]:
        return {"largest": dict(self.largest), "sibling_at_start": dict(self.sibling_at_start)}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], separator: str = "") -> UnseenShare:
        return cls(state["largest"], separator, state["sibling_at_start"])
