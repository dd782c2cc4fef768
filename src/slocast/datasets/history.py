"""Per-group history features: what the group's previous jobs turned out to need.

The strongest predictor of a job's run time or memory is usually what the same user's (or the
same process's) last jobs used (Tsafrir et al., 2007). These features only use jobs that had
*finished* before this job was submitted (``known_at < time``), so they are known at submit time
and a scheduler can supply them when it asks for a bound. They are optional at serving time: a
caller without history leaves them out and the model treats them as missing.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Literal

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

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
    and outcomes (:func:`size_lines`) at this job's size, where that line has bounded those jobs
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
    line = np.full(len(frame), np.nan)  # each job's value on its group's size line
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
        recent = _latest_quantile(_latest(outcomes), "inverted_cdf")
        quantile[rows[one]] = recent[count[one] - 1]
        if sizes is not None:
            intercept, slope = size_lines(_latest(sizes[finished]), _latest(outcomes))
            at = count[one] - 1
            needs = _significant(intercept[at] + slope[at] * sizes[rows[one]])
            # A line through small jobs can cross 0 below them.
            line[rows[one]] = np.maximum(needs, 0.0) if spec.non_negative else needs
            # Each finished job's two values, as they stood at its submission.
            tight = tighter(outcomes, quantile[finished], line[finished])[at]
            out[history_size_name(group, spec.target)][rows[one]] = np.where(
                tight, line[rows[one]], quantile[rows[one]]
            )
    frame = frame.assign(**out)
    spec = replace(
        spec, numeric=spec.numeric + columns, optional=tuple(dict.fromkeys(spec.optional + columns))
    )
    return frame, spec


def _latest(values: np.ndarray) -> np.ndarray:
    """Row ``k - 1``: the latest ``RECENT`` of ``values[:k]``, NaN-padded in front (a view)."""
    padded = np.concatenate([np.full(RECENT - 1, np.nan), np.asarray(values, np.float64)])
    return sliding_window_view(padded, RECENT)


def _significant(values: np.ndarray, digits: int = 4) -> np.ndarray:
    """``values`` to ``digits`` significant digits. A tree compiled to float32 thresholds
    sends a value within float32 precision of a threshold the other way than the native tree
    does; values this coarse lie far from any threshold between two of them.

    >>> _significant(np.array([4620295808.591317, 0.012345678, 0.0, np.nan])).tolist()
    [4620000000.0, 0.01235, 0.0, nan]
    """
    magnitude = np.floor(np.log10(np.abs(values), where=values != 0, out=np.zeros_like(values)))
    scale = 10.0 ** (digits - 1 - np.nan_to_num(magnitude))
    return np.asarray(np.round(values * scale) / scale)


def size_lines(size: np.ndarray, outcome: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of jobs (NaN: none there), intercept and slope of the least-squares line of
    ``outcome`` on ``size``, the slope held at 0 or above: a job with more input needs no less,
    and a negative slope fitted to noise would bound the largest jobs lowest. Fewer than three
    sized jobs, or all of one size, say nothing of a slope: the line is flat at their largest
    outcome.

    >>> x, y = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [np.nan, 1.0, np.nan]]), np.array(
    ...     [[3.0, 5.0, 7.0], [7.0, 5.0, 3.0], [np.nan, 4.0, 6.0]])
    >>> [line.tolist() for line in size_lines(x, y)]  # the second held at 0
    [[1.0, 5.0, 6.0], [2.0, 0.0, 0.0]]
    """
    sized = np.isfinite(size) & np.isfinite(outcome)
    n = sized.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_x = np.where(sized, size, 0.0).sum(axis=1) / n
        mean_y = np.where(sized, outcome, 0.0).sum(axis=1) / n
        dx = np.where(sized, size - mean_x[:, None], 0.0)
        dy = np.where(sized, outcome - mean_y[:, None], 0.0)
        slope = np.maximum((dx * dy).sum(axis=1) / (dx * dx).sum(axis=1), 0.0)
    spread = np.where(sized, size, -np.inf).max(axis=1) > np.where(sized, size, np.inf).min(axis=1)
    line = (n >= 3) & spread
    flat = np.fmax.reduce(outcome, axis=1)  # the largest outcome, NaN padding ignored
    return np.where(line, mean_y - slope * mean_x, flat), np.where(line, slope, 0.0)


def tighter(outcomes: np.ndarray, quantile: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Row ``k - 1``: whether, on the latest ``RECENT`` of the first ``k`` finished jobs, the
    line's values would have given a tighter upper bound than the 0.9 quantile's -- each base
    shifted by the 0.9 quantile of its own errors, the mean excess over the outcomes is
    smaller. Both bound 90 % of those jobs, so the tighter wastes less at equal coverage.
    Fewer than three jobs with both values: not tighter.

    ``outcomes``, ``quantile`` and ``line``: the finished jobs in order of finishing, each
    base as it stood when that job was submitted (so every error is out of sample).

    >>> y = np.array([1.0, 2.0, 3.0, 4.0])
    >>> tighter(y, np.full(4, 4.0), y + 0.1).tolist()  # an exact line, from three jobs on
    [False, False, True, True]
    """
    by_quantile, by_line = _latest(outcomes - quantile), _latest(outcomes - line)
    both = np.isfinite(by_quantile) & np.isfinite(by_line)
    q = _excess(np.where(both, by_quantile, np.nan))
    fit = _excess(np.where(both, by_line, np.nan))
    return np.asarray((both.sum(axis=1) >= 3) & (fit < q))


def _excess(errors: np.ndarray) -> np.ndarray:
    """Per row: the mean excess of the bound that shifts a base by the 0.9 quantile of its
    errors (NaN: no job there)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row with no job: NaN
        mean = np.nanmean(errors, axis=1)
    return np.asarray(_latest_quantile(errors, "higher") - mean)


def _latest_quantile(rows: np.ndarray, method: Literal["inverted_cdf", "higher"]) -> np.ndarray:
    """The 0.9 quantile of each row's values (NaN: no value there), as :func:`np.quantile`
    computes it on those values alone; rows of full windows at once."""
    full = np.isfinite(rows).all(axis=1)
    result = np.full(len(rows), np.nan)
    if full.any():
        result[full] = np.quantile(rows[full], 0.9, axis=1, method=method)
    for i in np.flatnonzero(~full & np.isfinite(rows).any(axis=1)).tolist():
        values = rows[i][np.isfinite(rows[i])]
        result[i] = np.quantile(values, 0.9, method=method)
    return result
