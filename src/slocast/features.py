"""The single feature pipeline shared by training and serving.

Training fits it on past rows; serving loads the fitted state from the bundle and calls the
same :meth:`FeaturePipeline.transform`, so the two can never disagree. Categorical codes are
frozen at fit time; categories rarer than ``min_category_count`` and categories never seen in
training share one "other" code. The target may be modelled on a log scale when that makes its
distribution less skewed (latencies, runtimes and memory usually are).

A pipeline may also carry an *anchor*: numeric columns (e.g. the group's last outcome, then the
user's request) whose first present value is a per-job reference for the target. Models then learn
the target relative to the anchor (:meth:`FeaturePipeline.offset`), which carries over to groups and
scales never seen in training -- trees cannot extrapolate an absolute target, but a ratio to the
group's own history they can.

The same holds for load: a domain's ``scale_with`` features (e.g. the requests queued ahead)
make the target modelled relative to ``1 + Σ wᵢ·loadᵢ`` on the log scale, where
``y ≈ α + Σ βᵢ·loadᵢ`` fitted by non-negative least squares on the training rows gives
``wᵢ = βᵢ/α``. A queue twice as long as any in training then gets a bound grown as the fitted
line grows, where trees alone would repeat the largest one; a load the target does not follow
gets ``wᵢ = 0`` and changes nothing.

>>> import pandas as pd
>>> from slocast.schema import DomainSpec
>>> spec = DomainSpec("demo", target="y", numeric=("x",), categorical=("g",))
>>> train = pd.DataFrame({"x": [1.0, 2.0, 3.0], "g": ["a", "a", "b"], "y": [1.0, 10.0, 100.0]})
>>> pipe = FeaturePipeline.fit(train, spec, min_category_count=2)
>>> pipe.transform(pd.DataFrame({"g": ["a", "zzz"], "x": [5.0, 6.0]})).tolist()
[[5.0, 0.0], [6.0, 1.0]]
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import chain
from operator import itemgetter
from typing import Any, Literal

import numpy as np
import pandas as pd

from slocast.errors import InputError, LifecycleError
from slocast.schema import POOLED, DomainSpec

__all__ = [
    "FeaturePipeline",
    "TargetTransform",
    "column_group_keys",
    "group_keys",
    "history_base_column",
    "history_quantile_name",
    "history_size_name",
    "numeric_block",
    "record_group_keys",
]

TargetTransform = Literal["identity", "log1p"]


@dataclass(frozen=True)
class FeaturePipeline:
    """Fitted feature state: column order, category codes and the target transform."""

    numeric: tuple[str, ...]
    categories: Mapping[str, tuple[str, ...]]
    target_transform: TargetTransform
    anchor: tuple[str, ...] = ()
    anchor_fallback: float = 0.0  # offset (model scale) for a job with no anchor value
    scale_with: tuple[str, ...] = ()
    scale_weights: tuple[float, ...] = ()  # wᵢ per scale_with column, fitted
    _codes: dict[str, dict[str, float]] = field(init=False, repr=False, compare=False)
    _scale_index: list[int] = field(init=False, repr=False, compare=False)
    _scale_weights: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        codes = {c: {v: float(i) for i, v in enumerate(k)} for c, k in self.categories.items()}
        object.__setattr__(self, "_codes", codes)
        for name, columns in (("anchor", self.anchor), ("scale_with", self.scale_with)):
            unknown = [c for c in columns if c not in self.numeric]
            if unknown:
                raise InputError(
                    f"{name} column {unknown[0]!r} is not a numeric feature", field=name
                )
        if self.scale_with and self.target_transform != "log1p":
            raise InputError("scale_with needs the log1p target transform", field="scale_with")
        if len(self.scale_weights) != len(self.scale_with):
            raise InputError("one scale weight per scale_with column", field="scale_weights")
        object.__setattr__(self, "_scale_index", [self.numeric.index(c) for c in self.scale_with])
        object.__setattr__(self, "_scale_weights", np.array(self.scale_weights, np.float64))

    @property
    def columns(self) -> tuple[str, ...]:
        return self.numeric + tuple(self.categories)

    @property
    def categorical_indices(self) -> list[int]:
        return list(range(len(self.numeric), len(self.columns)))

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        spec: DomainSpec,
        min_category_count: int = 5,
        anchor: Sequence[str] = (),
    ) -> FeaturePipeline:
        leaking = {spec.target, spec.known_at} & set(spec.features)
        if leaking:
            raise LifecycleError(f"features include outcome columns {sorted(leaking)}")
        categories: dict[str, tuple[str, ...]] = {}
        for column in spec.categorical:
            counts = frame[column].dropna().astype(str).value_counts(sort=True)
            frequent = counts[counts >= min_category_count]
            categories[column] = tuple(sorted(frequent.index))
        y = frame[spec.target].to_numpy(float)
        # A target per unit of load is a ratio: only the log scale turns it into an offset.
        transform = "log1p" if spec.scale_with else _choose_transform(y)
        weights = _load_weights(frame, spec.scale_with, y) if spec.scale_with else ()
        pipeline = cls(
            spec.numeric, categories, transform, tuple(anchor), 0.0, spec.scale_with, weights
        )
        if not anchor:
            return pipeline
        return replace(pipeline, anchor_fallback=float(np.nanmedian(pipeline.encode_target(y))))

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Feature matrix (float64, columns in :attr:`columns` order) for a frame of jobs."""
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise InputError(f"missing feature {missing[0]!r}", field=missing[0])
        out = np.empty((len(frame), len(self.columns)), dtype=np.float64)
        for i, column in enumerate(self.numeric):
            values = pd.to_numeric(frame[column], errors="coerce")
            out[:, i] = values.to_numpy(dtype=np.float64, na_value=np.nan)
        for j, column in enumerate(self.categories, start=len(self.numeric)):
            out[:, j] = self._code(column, frame[column].tolist())
        return out

    def _code(self, column: str, values: Iterable[object]) -> list[float]:
        """Category codes; rare and unseen categories share the code after the last known one
        ("other"), a missing value stays NaN."""
        codes, other = self._codes[column], float(len(self._codes[column]))
        return [np.nan if _missing(v) else codes.get(str(v), other) for v in values]

    def transform_records(self, records: Sequence[Mapping[str, object]]) -> np.ndarray:
        """Same as :meth:`transform` for a list of dicts (JSON lines, HTTP bodies).

        Built straight from the dicts, without a DataFrame: this is the serving hot path. An
        absent key is a missing value (callers validate which keys are required).
        """
        out = np.empty((len(records), len(self.columns)), dtype=np.float64)
        numeric = self.numeric
        try:
            # One conversion for the whole block (None becomes NaN, numeric strings parse).
            out[:, : len(numeric)] = numeric_block(records, numeric, itemgetter)
        except (KeyError, ValueError, TypeError):
            # An absent key (an optional feature), blank strings and the like: value by value.
            for i, column in enumerate(numeric):
                out[:, i] = [_number(r.get(column)) for r in records]
        for j, column in enumerate(self.categories, start=len(numeric)):
            out[:, j] = self._code(column, (r.get(column) for r in records))
        return out

    def transform_columns(
        self,
        numeric: Mapping[str, np.ndarray],
        categorical: Mapping[str, Sequence[object]],
        rows: int,
    ) -> np.ndarray:
        """Same as :meth:`transform` for jobs sent as columns, one value per job: numbers as
        float arrays, categories as sequences. A feature with no column is missing."""
        out = np.full((rows, len(self.columns)), np.nan)
        for i, column in enumerate(self.numeric):
            if column in numeric:
                out[:, i] = numeric[column]
        for j, column in enumerate(self.categories, start=len(self.numeric)):
            if column in categorical:
                out[:, j] = self._code(column, categorical[column])
        return out

    def offset(self, X: np.ndarray) -> np.ndarray:
        """Per-job reference on the model's target scale: the first positive anchor column, else
        the training median (zero without an anchor), plus ``log(1 + Σ wᵢ·loadᵢ)`` for the
        ``scale_with`` columns (a missing load counts as none)."""
        if not self.scale_with:  # the serving hot path of most domains: nothing to add
            return self._anchor_offset(X)
        if len(X) == 1 and not self.anchor:  # one row (serving): floats beat numpy's call costs
            row = X[0]
            load = sum(w * max(float(row[i]), 0.0) for i, w in zip(self._scale_index,
                       self.scale_weights, strict=True) if row[i] == row[i])  # fmt: skip
            return np.array([math.log1p(load)])
        # fmax drops NaN (a missing load) in favour of 0.
        scale = np.log1p(np.fmax(X[:, self._scale_index], 0.0) @ self._scale_weights)
        return scale + self._anchor_offset(X) if self.anchor else np.asarray(scale, np.float64)

    def _anchor_offset(self, X: np.ndarray) -> np.ndarray:
        if not self.anchor:
            return np.zeros(len(X))
        value = np.full(len(X), np.nan)
        for column in self.anchor:
            candidate = X[:, self.numeric.index(column)]
            usable = np.isnan(value) & np.isfinite(candidate) & (candidate > 0)
            value = np.where(usable, candidate, value)
        present = np.isfinite(value)
        encoded = self.encode_target(np.where(present, value, 0.0))
        return np.where(present, encoded, self.anchor_fallback)

    def encode_target(self, y: np.ndarray) -> np.ndarray:
        return np.log1p(np.maximum(y, 0.0)) if self.target_transform == "log1p" else y

    def decode_target(self, z: np.ndarray) -> np.ndarray:
        return np.expm1(z) if self.target_transform == "log1p" else z

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "numeric": list(self.numeric),
            "categories": {k: list(v) for k, v in self.categories.items()},
            "target_transform": self.target_transform,
        }
        if self.anchor:
            data["anchor"] = list(self.anchor)
            data["anchor_fallback"] = self.anchor_fallback
        if self.scale_with:
            data["scale_with"] = list(self.scale_with)
            data["scale_weights"] = list(self.scale_weights)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> FeaturePipeline:
        numeric = data["numeric"]
        categories = data["categories"]
        transform = data["target_transform"]
        if not isinstance(numeric, list) or not isinstance(categories, dict):
            raise InputError("malformed feature schema", field="features")
        if transform not in ("identity", "log1p"):
            raise InputError(f"unknown target transform {transform!r}", field="target_transform")
        anchor = data.get("anchor", [])
        fallback = data.get("anchor_fallback", 0.0)
        if not isinstance(anchor, list) or not isinstance(fallback, int | float):
            raise InputError("malformed anchor in feature schema", field="anchor")
        scale_with = data.get("scale_with", [])
        weights = data.get("scale_weights", [])
        if not isinstance(scale_with, list) or not isinstance(weights, list):
            raise InputError("malformed scale_with in feature schema", field="scale_with")
        return cls(
            tuple(str(c) for c in numeric),
            {str(k): tuple(str(x) for x in v) for k, v in categories.items()},
            transform,
            tuple(str(c) for c in anchor),
            float(fallback),
            tuple(str(c) for c in scale_with),
            tuple(float(w) for w in weights),
        )

    def schema_hash(self) -> str:
        """sha256 of the canonical feature schema: a bundle and its server must agree on it."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def group_keys(frame: pd.DataFrame, spec: DomainSpec) -> np.ndarray:
    """Each job's group as a string (POOLED when the domain or the job has none)."""
    if spec.group is None:
        return np.full(len(frame), POOLED, dtype=object)
    return frame[spec.group].astype("string").fillna(POOLED).to_numpy(dtype=object)


def history_quantile_name(group: str, target: str) -> str:
    """The history feature holding the 0.9 quantile of the group's latest finished outcomes."""
    return f"{group}_p90_{target}"


def history_size_name(group: str, target: str) -> str:
    """The history feature holding what the group's history says a job of this size needs
    (:func:`slocast.datasets.history.add_group_history`)."""
    return f"{group}_by_size_{target}"


def history_base_column(spec: DomainSpec, on_size: bool = True) -> str | None:
    """The history expert's base (:mod:`slocast.calibration.history`): what the group's
    history says this job needs by its size where the domain keeps that (and ``on_size``),
    else the 0.9 quantile of the group's latest outcomes (None without groups)."""
    if spec.group is None:
        return None
    by_size = history_size_name(spec.group, spec.target)
    if on_size and by_size in spec.numeric:
        return by_size
    return history_quantile_name(spec.group, spec.target)


def record_group_keys(records: Sequence[Mapping[str, object]], spec: DomainSpec) -> np.ndarray:
    """:func:`group_keys` for job dicts (the serving path)."""
    group = spec.group
    values = None if group is None else [r.get(group) for r in records]
    return _group_strings(values, len(records))


def column_group_keys(
    categorical: Mapping[str, Sequence[object]], spec: DomainSpec, rows: int
) -> np.ndarray:
    """:func:`group_keys` for jobs sent as columns (no group column: every job pooled)."""
    return _group_strings(categorical.get(spec.group) if spec.group else None, rows)


def _group_strings(values: Sequence[object] | None, rows: int) -> np.ndarray:
    if values is None:
        return np.full(rows, POOLED, dtype=object)
    return np.array([POOLED if v is None else str(v) for v in values], dtype=object)


def numeric_block(
    rows: Sequence[object],
    names: Sequence[str],
    getter: Callable[..., Callable[[Any], Any]] = itemgetter,
) -> np.ndarray:
    """Rows × ``names`` as float64, in one conversion for the whole batch (None becomes NaN).

    ``getter`` reads the values: ``itemgetter`` for dicts, ``attrgetter`` for objects with one
    attribute per field (decoded structs). A value that is not a number raises.

    >>> numeric_block([{"a": 1, "b": None}, {"a": 2.5, "b": 3}], ["a", "b"]).tolist()
    [[1.0, nan], [2.5, 3.0]]
    """
    if not names:
        return np.empty((len(rows), 0))
    row = getter(*names, names[0])  # two or more names: always a tuple
    values = chain.from_iterable(map(row, rows))
    block = np.fromiter(values, np.float64, len(rows) * (len(names) + 1))
    return block.reshape(len(rows), -1)[:, : len(names)]


def _number(value: object) -> float:
    if value is None or isinstance(value, str):
        return float(value) if isinstance(value, str) and value.strip() else np.nan
    return float(value)  # type: ignore[arg-type]


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def _load_weights(frame: pd.DataFrame, columns: Sequence[str], y: np.ndarray) -> tuple[float, ...]:
    """``βᵢ/α`` of ``y ≈ α + Σ βᵢ·loadᵢ`` (least squares, β ≥ 0): how much one unit of each load
    adds to the target, relative to the target with no load. Columns whose slope comes out
    negative are dropped and the rest refitted (non-negative least squares on few columns)."""
    loads = np.column_stack(
        [pd.to_numeric(frame[c], errors="coerce").to_numpy(np.float64) for c in columns]
    )
    usable = np.isfinite(y) & np.isfinite(loads).all(axis=1)
    loads, y = np.maximum(loads[usable], 0.0), y[usable]
    active = list(range(len(columns)))
    beta = np.zeros(len(columns))
    alpha = float(y.mean()) if len(y) else 1.0
    while active and len(y) > len(active):
        design = np.column_stack([np.ones(len(y)), loads[:, active]])
        coef = np.linalg.lstsq(design, y, rcond=None)[0]
        if (coef[1:] >= 0).all():
            alpha, beta[active] = float(coef[0]), coef[1:]
            break
        active = [c for c, b in zip(active, coef[1:], strict=True) if b >= 0]
    # A line through (or below) the origin: the target is all load. Keep the ratio finite.
    alpha = max(alpha, 1e-3 * max(float(np.abs(y).mean()) if len(y) else 1.0, 1e-12))
    return tuple(float(b / alpha) for b in beta)


def _choose_transform(y: np.ndarray) -> TargetTransform:
    """Log scale when the target is non-negative and the log makes it less skewed."""
    y = y[np.isfinite(y)]
    if len(y) < 3 or y.min() < 0:
        return "identity"
    return "log1p" if abs(_skew(np.log1p(y))) < abs(_skew(y)) else "identity"


def _skew(x: np.ndarray) -> float:
    sd = float(x.std())
    return 0.0 if sd == 0 else float(np.mean(((x - x.mean()) / sd) ** 3))
