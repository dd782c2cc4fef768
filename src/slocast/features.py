"""The single feature pipeline shared by training and serving.

Training fits it on past rows; serving loads the fitted state from the bundle and calls the
same :meth:`FeaturePipeline.transform`, so the two can never disagree. Categorical codes are
frozen at fit time; categories rarer than ``min_category_count`` and categories never seen in
training share one "other" code. The target may be modelled on a log scale when that makes its
distribution less skewed (latencies, runtimes and memory usually are).

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from slocast.errors import InputError, LifecycleError
from slocast.schema import POOLED, DomainSpec

__all__ = ["FeaturePipeline", "TargetTransform", "group_keys", "record_group_keys"]

TargetTransform = Literal["identity", "log1p"]


@dataclass(frozen=True)
class FeaturePipeline:
    """Fitted feature state: column order, category codes and the target transform."""

    numeric: tuple[str, ...]
    categories: Mapping[str, tuple[str, ...]]
    target_transform: TargetTransform
    _codes: dict[str, dict[str, float]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        codes = {c: {v: float(i) for i, v in enumerate(k)} for c, k in self.categories.items()}
        object.__setattr__(self, "_codes", codes)

    @property
    def columns(self) -> tuple[str, ...]:
        return self.numeric + tuple(self.categories)

    @property
    def categorical_indices(self) -> list[int]:
        return list(range(len(self.numeric), len(self.columns)))

    @classmethod
    def fit(
        cls, frame: pd.DataFrame, spec: DomainSpec, min_category_count: int = 5
    ) -> FeaturePipeline:
        leaking = {spec.target, spec.known_at} & set(spec.features)
        if leaking:
            raise LifecycleError(f"features include outcome columns {sorted(leaking)}")
        categories: dict[str, tuple[str, ...]] = {}
        for column in spec.categorical:
            counts = frame[column].dropna().astype(str).value_counts(sort=True)
            frequent = counts[counts >= min_category_count]
            categories[column] = tuple(sorted(frequent.index))
        return cls(spec.numeric, categories, _choose_transform(frame[spec.target].to_numpy(float)))

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
            codes, other = self._codes[column], float(len(self._codes[column]))
            # Rare and unseen categories share the code after the last known one ("other").
            out[:, j] = [
                np.nan if _missing(v) else codes.get(str(v), other) for v in frame[column].tolist()
            ]
        return out

    def transform_records(self, records: Sequence[Mapping[str, object]]) -> np.ndarray:
        """Same as :meth:`transform` for a list of dicts (JSON lines, HTTP bodies).

        Built straight from the dicts, without a DataFrame: this is the serving hot path. An
        absent key is a missing value (callers validate which keys are required).
        """
        out = np.empty((len(records), len(self.columns)), dtype=np.float64)
        for i, column in enumerate(self.numeric):
            out[:, i] = [_number(r.get(column)) for r in records]
        for j, column in enumerate(self.categories, start=len(self.numeric)):
            codes, other = self._codes[column], float(len(self._codes[column]))
            out[:, j] = [
                np.nan if _missing(v := r.get(column)) else codes.get(str(v), other)
                for r in records
            ]
        return out

    def encode_target(self, y: np.ndarray) -> np.ndarray:
        return np.log1p(np.maximum(y, 0.0)) if self.target_transform == "log1p" else y

    def decode_target(self, z: np.ndarray) -> np.ndarray:
        return np.expm1(z) if self.target_transform == "log1p" else z

    def to_dict(self) -> dict[str, object]:
        return {
            "numeric": list(self.numeric),
            "categories": {k: list(v) for k, v in self.categories.items()},
            "target_transform": self.target_transform,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> FeaturePipeline:
        numeric = data["numeric"]
        categories = data["categories"]
        transform = data["target_transform"]
        if not isinstance(numeric, list) or not isinstance(categories, dict):
            raise InputError("malformed feature schema", field="features")
        if transform not in ("identity", "log1p"):
            raise InputError(f"unknown target transform {transform!r}", field="target_transform")
        return cls(
            tuple(str(c) for c in numeric),
            {str(k): tuple(str(x) for x in v) for k, v in categories.items()},
            transform,
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


def record_group_keys(records: Sequence[Mapping[str, object]], spec: DomainSpec) -> np.ndarray:
    """:func:`group_keys` for job dicts (the serving path)."""
    group = spec.group
    return np.array(
        [POOLED if group is None or r.get(group) is None else str(r[group]) for r in records],
        dtype=object,
    )


def _number(value: object) -> float:
    if value is None or isinstance(value, str):
        return float(value) if isinstance(value, str) and value.strip() else np.nan
    return float(value)  # type: ignore[arg-type]


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def _choose_transform(y: np.ndarray) -> TargetTransform:
    """Log scale when the target is non-negative and the log makes it less skewed."""
    y = y[np.isfinite(y)]
    if len(y) < 3 or y.min() < 0:
        return "identity"
    return "log1p" if abs(_skew(np.log1p(y))) < abs(_skew(y)) else "identity"


def _skew(x: np.ndarray) -> float:
    sd = float(x.std())
    return 0.0 if sd == 0 else float(np.mean(((x - x.mean()) / sd) ** 3))
