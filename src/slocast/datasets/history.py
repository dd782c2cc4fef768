"""Per-group history features: what the group's previous jobs turned out to need.

The strongest predictor of a job's run time or memory is usually what the same user's (or the
same process's) last jobs used (Tsafrir et al., 2007). These features only use jobs that had
*finished* before this job was submitted (``known_at < time``), so they are known at submit time
and a scheduler can supply them when it asks for a bound. They are optional at serving time: a
caller without history leaves them out and the model treats them as missing.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from slocast.features import history_quantile_name, history_size_name
from slocast.schema import DomainSpec

__all__ = ["add_group_history", "history_columns"]


# How many of a group's latest outcomes its recent 0.9 quantile looks at.
RECENT = 50


def history_columns(spec: DomainSpec, group: str, size: str | None = None) -> tuple[str, ...]:
    names = [f"{group}_prev_{spec.target}", f"{group}_prev2_mean_{spec.target}"]
    if spec.user_request:
        names.append(f"{group}_prev_{spec.target}_to_request")
    names.append(history_quantile_name(group, spec.target))
    if size is not None:
        names.append(history_size_name(group, spec.target))
    return tuple(names)


def add_group_history(
    frame: pd.DataFrame, spec: DomainSpec, group: str, size: str | None = None
) -> tuple[pd.DataFrame, DomainSpec]:
    """Add the last and mean-of-last-two finished outcomes per group (and last outcome/request),
    and the 0.9 quantile of the group's latest ``RECENT`` finished outcomes.

    With ``size``, a column saying how big a job is (a task's input), also what the group's
    history says a job of this size needs: the line through its latest finished jobs' sizes
    and outcomes (:func:`size_line`) at this job's size, where that line has bounded those jobs
    more tightly than their 0.9 quantile (:func:`tighter`); the quantile elsewhere. A process
    whose memory follows its input (a profiler reading the whole file) is then sized by its
    input; one whose memory does not (a tool with a fixed footprint, or two modes), by its
    quantile.

    >>> spec = DomainSpec("d", target="y", numeric=(), categorical=("u",))
    >>> f = pd.DataFrame({"u": ["a", "a", "a"], "y": [1.0, 3.0, 5.0],
    ...                   "time": [0.0, 1.0, 9.0], "known_at": [2.0, 3.0, 10.0]})
    >>> out, _ = add_group_history(f, spec, "u")
    >>> out["u_prev_y"].tolist()  # job 2 was submitted before job 1 finished
    [nan, nan, 3.0]
    >>> out["u_prev2_mean_y"].tolist()
    [nan, nan, 2.0]
    >>> out["u_p90_y"].tolist()  # the smallest outcome with 90 % at or below it
    [nan, nan, 3.0]
    """
    if group not in frame:  # a log that never records the group: no history to add
        return frame, spec
    columns = history_columns(spec, group, size)
    time = frame[spec.time].to_numpy(np.float64)
    known = frame[spec.known_at].to_numpy(np.float64)
    y = frame[spec.target].to_numpy(np.float64)
    request = frame[spec.user_request].to_numpy(np.float64) if spec.user_request else None
    sizes = None if size is None else frame[size].to_numpy(np.float64)
    out = {name: np.full(len(frame), np.nan) for name in columns}
    quantile = out[history_quantile_name(group, spec.target)]
    for indices in frame.groupby(group, sort=False, dropna=True).indices.values():
        rows = np.asarray(indices, dtype=np.intp)
        finished = rows[np.argsort(known[rows], kind="stable")]
        # How many of the group's jobs had finished strictly before each job's submission.
        count = np.searchsorted(known[finished], time[rows], side="left")
        one, two = count >= 1, count >= 2
        last = finished[count[one] - 1]
        out[columns[0]][rows[one]] = y[last]
        out[columns[1]][rows[two]] = (y[finished[count[two] - 1]] + y[finished[count[two] - 2]]) / 2
        if request is not None:
            out[columns[2]][rows[one]] = y[last] / request[last]
        # The quantile after each number of finished jobs, then read off per job.
        outcomes = y[finished]
        # An observed outcome (no interpolation): values differing from a tree's threshold
        # only in the last bit would make compiled and native trees disagree.
        recent = [
            np.quantile(outcomes[max(0, k - RECENT) : k], 0.9, method="inverted_cdf")
            for k in range(1, len(rows) + 1)
        ]
        quantile[rows[one]] = np.asarray(recent)[count[one] - 1]
        if sizes is not None:
            needs = _by_size(sizes[rows], sizes[finished], outcomes, count)
            if spec.non_negative:  # a line through small jobs can cross 0 below them
                needs = np.maximum(needs, 0.0)
            # Each finished job's two values, as they stood at its submission.
            order = np.argsort(rows, kind="stable")
            at = order[np.searchsorted(rows, finished, sorter=order)]
            tight = tighter(outcomes, quantile[finished], needs[at], count[one])
            out[history_size_name(group, spec.target)][rows[one]] = np.where(
                tight, needs[one], quantile[rows[one]]
            )
    frame = frame.assign(**out)
    spec = replace(
        spec, numeric=spec.numeric + columns, optional=tuple(dict.fromkeys(spec.optional + columns))
    )
    return frame, spec


def _by_size(
    size: np.ndarray, done: np.ndarray, outcomes: np.ndarray, count: np.ndarray
) -> np.ndarray:
    """Per job of a group (``size``; ``count`` of the group's jobs finished before it): its
    size on the line through the latest ``RECENT`` of them (sizes ``done``, ``outcomes``, in
    order of finishing); NaN where none had finished."""
    lines = {
        k: size_line(done[max(0, k - RECENT) : k], outcomes[max(0, k - RECENT) : k])
        for k in np.unique(count[count > 0]).tolist()
    }
    line = np.array([lines.get(k, (np.nan, np.nan)) for k in count.tolist()]).reshape(-1, 2)
    return np.asarray(line[:, 0] + line[:, 1] * size)


def size_line(size: np.ndarray, outcome: np.ndarray) -> tuple[float, float]:
    """Intercept and slope of the least-squares line of ``outcome`` on ``size``, the slope
    held at 0 or above: a job with more input needs no less, and a negative slope fitted to
    noise would bound the largest jobs lowest. Fewer than three sized jobs, or all of one size,
    say nothing of a slope: the line is flat at their largest outcome.

    >>> size_line(np.array([1.0, 2.0, 3.0]), np.array([3.0, 5.0, 7.0]))
    (1.0, 2.0)
    >>> size_line(np.array([1.0, 2.0, 3.0]), np.array([7.0, 5.0, 3.0]))  # held at 0
    (5.0, 0.0)
    >>> size_line(np.array([1.0, np.nan]), np.array([4.0, 6.0]))
    (6.0, 0.0)
    """
    known = np.isfinite(size)
    x, y = size[known], outcome[known]
    if len(x) < 3 or np.ptp(x) == 0:
        return float(np.max(outcome)), 0.0
    slope = max(0.0, float(np.mean((x - x.mean()) * (y - y.mean())) / np.var(x)))
    return float(y.mean() - slope * x.mean()), slope


def tighter(
    outcomes: np.ndarray, quantile: np.ndarray, line: np.ndarray, count: np.ndarray
) -> np.ndarray:
    """Per job (``count`` of its group's jobs finished before it): whether, on the latest
    ``RECENT`` of those, the line's values would have given a tighter upper bound than the 0.9
    quantile's -- each base shifted by the 0.9 quantile of its own errors, the mean excess
    over the outcomes is smaller. Both bound 90 % of those jobs, so the tighter wastes less at
    equal coverage. Fewer than three jobs with both values: not tighter.

    ``outcomes``, ``quantile`` and ``line``: the finished jobs in order of finishing, each
    base as it stood when that job was submitted (so every error is out of sample).

    >>> y = np.array([1.0, 2.0, 3.0, 4.0])
    >>> tighter(y, np.full(4, 4.0), y + 0.1, np.array([4, 2])).tolist()  # exact line; too few
    [True, False]
    """
    by_quantile, by_line = outcomes - quantile, outcomes - line
    verdicts = {}
    for k in np.unique(count).tolist():
        window = slice(max(0, k - RECENT), k)
        q, fit = by_quantile[window], by_line[window]
        both = np.isfinite(q) & np.isfinite(fit)
        verdicts[k] = bool(both.sum() >= 3 and _excess(fit[both]) < _excess(q[both]))
    return np.array([verdicts[k] for k in count.tolist()], dtype=bool)


def _excess(errors: np.ndarray) -> float:
    """Mean excess of the bound that shifts a base by the 0.9 quantile of its errors."""
    return float(np.mean(np.quantile(errors, 0.9, method="higher") - errors))
