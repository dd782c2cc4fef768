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

from slocast.features import history_quantile_name
from slocast.schema import DomainSpec

__all__ = ["add_group_history", "history_columns"]


# How many of a group's latest outcomes its recent 0.9 quantile looks at.
RECENT = 50


def history_columns(spec: DomainSpec, group: str) -> tuple[str, ...]:
    names = [f"{group}_prev_{spec.target}", f"{group}_prev2_mean_{spec.target}"]
    if spec.user_request:
        names.append(f"{group}_prev_{spec.target}_to_request")
    names.append(history_quantile_name(group, spec.target))
    return tuple(names)


def add_group_history(
    frame: pd.DataFrame, spec: DomainSpec, group: str
) -> tuple[pd.DataFrame, DomainSpec]:
    """Add the last and mean-of-last-two finished outcomes per group (and last outcome/request),
    and the 0.9 quantile of the group's latest ``RECENT`` finished outcomes.

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
    columns = history_columns(spec, group)
    time = frame[spec.time].to_numpy(np.float64)
    known = frame[spec.known_at].to_numpy(np.float64)
    y = frame[spec.target].to_numpy(np.float64)
    request = frame[spec.user_request].to_numpy(np.float64) if spec.user_request else None
    out = {name: np.full(len(frame), np.nan) for name in columns}
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
        out[columns[-1]][rows[one]] = np.asarray(recent)[count[one] - 1]
    frame = frame.assign(**out)
    spec = replace(
        spec, numeric=spec.numeric + columns, optional=tuple(dict.fromkeys(spec.optional + columns))
    )
    return frame, spec
