"""The small protocols every model family and baseline implements."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

__all__ = ["Bounds", "Forecaster", "GBMConfig", "Regressor", "RegressorClass"]


@dataclass(frozen=True)
class Bounds:
    """Point estimates and upper bounds for a batch of jobs, in the target's own unit."""

    point: np.ndarray
    upper: np.ndarray

    def __post_init__(self) -> None:
        if self.point.shape != self.upper.shape:
            raise ValueError("point and upper must have the same shape")


@dataclass(frozen=True)
class GBMConfig:
    """Hyperparameters of the model families.

    The tree parameters apply to every family; ``n_bins`` / ``bin_strategy`` only to the
    bin-classification families, ``ensemble_weight`` (LightGBM's share) only to the ensemble,
    ``gate_feature`` / ``gate_min_rows`` only to the queue-gated family (``gate_index`` is the
    feature's column, filled in when the feature pipeline is known).
    """

    n_estimators: int = 300
    learning_rate: float = 0.05
    num_leaves: int = 31
    max_depth: int = 6
    min_child_samples: int = 20
    subsample: float = 0.8
    colsample: float = 0.9
    reg_lambda: float = 1.0
    seed: int = 0
    threads: int = 2
    n_bins: int = 8
    bin_strategy: str = "quantile"
    ensemble_weight: float = 0.5
    gate_feature: str = ""
    gate_index: int = -1
    gate_min_rows: int = 100


@runtime_checkable
class Regressor(Protocol):
    """A fitted-on-matrices model for one objective (a quantile level or the mean)."""

    family: str

    def fit(self, X: np.ndarray, y: np.ndarray) -> None: ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...

    def save(self, path: Path) -> None: ...


class RegressorClass(Protocol):
    """A model family: builds new regressors and loads saved ones (its file suffix)."""

    family: str
    suffix: str

    def __call__(
        self, quantile: float | None, config: GBMConfig = ..., categorical: list[int] | None = ...
    ) -> Regressor: ...

    def load(self, path: Path, quantile: float | None) -> Regressor: ...


@runtime_checkable
class Forecaster(Protocol):
    """Anything that gives upper bounds for jobs: a calibrated model or a baseline.

    ``fit`` sees the past (outcomes known); ``predict`` sees jobs at submit time;
    ``observe`` receives jobs whose outcomes just became known, with the bounds served for them
    (online methods learn from it; static ones ignore it).
    """

    name: str

    def fit(self, train: pd.DataFrame) -> None: ...

    def predict(self, frame: pd.DataFrame) -> Bounds: ...

    def observe(self, done: pd.DataFrame, served: Bounds) -> None: ...
