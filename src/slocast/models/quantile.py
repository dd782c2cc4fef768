"""Quantile GBM forecaster: the shared feature pipeline + a median and an upper-quantile model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from slocast.errors import ConfigError, EmptyDataError, LifecycleError
from slocast.features import FeaturePipeline
from slocast.models.base import Bounds, GBMConfig, Regressor
from slocast.models.families import make_regressor
from slocast.schema import DomainSpec

__all__ = ["MIN_TRAIN_ROWS", "MeanForecaster", "QuantileForecaster"]

MIN_TRAIN_ROWS = 10  # fewer outcomes than this cannot fit a model worth serving


class QuantileForecaster:
    """Upper bound = the GBM's ``coverage`` quantile; point = its median. Uncalibrated.

    Both models learn the target on the pipeline's scale (log for skewed targets), relative to
    the pipeline's per-job anchor when ``anchor`` names columns (see
    :meth:`~slocast.features.FeaturePipeline.offset`); the upper quantile is never allowed below
    the median (no crossing).
    """

    name = "quantile_raw"
    online = False

    def __init__(
        self,
        spec: DomainSpec,
        coverage: float,
        family: str = "lightgbm",
        config: GBMConfig = GBMConfig(),
        min_category_count: int = 5,
        anchor: Sequence[str] = (),
    ) -> None:
        self.spec = spec
        self.anchor = tuple(anchor)
        self.coverage = coverage
        self.family = family
        self.config = config
        self.min_category_count = min_category_count
        self.pipeline: FeaturePipeline | None = None
        self.point_model: Regressor | None = None
        self.upper_model: Regressor | None = None

    def _design(self, train: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, FeaturePipeline]:
        """Fit the feature pipeline; return the feature matrix and the raw target."""
        train = train[train[self.spec.target].notna()]
        if len(train) < MIN_TRAIN_ROWS:
            raise EmptyDataError(
                f"need at least {MIN_TRAIN_ROWS} training jobs with a known outcome, got "
                f"{len(train)} (in a trace, only jobs that finished before the calibration "
                "period count)",
                field="dataset",
            )
        pipeline = FeaturePipeline.fit(train, self.spec, self.min_category_count, self.anchor)
        return pipeline.transform(train), train[self.spec.target].to_numpy(np.float64), pipeline

    def fit(self, train: pd.DataFrame) -> None:
        X, y, self.pipeline = self._design(train)
        z = self.pipeline.encode_target(y) - self.pipeline.offset(X)
        cats = self.pipeline.categorical_indices
        if self.config.gate_feature:
            if self.config.gate_feature not in self.pipeline.columns:
                raise ConfigError(
                    f"gate feature {self.config.gate_feature!r} is not a feature of "
                    f"{self.spec.name}",
                    field="gate_feature",
                )
            gate = self.pipeline.columns.index(self.config.gate_feature)
            self.config = replace(self.config, gate_index=gate)
        self.upper_model = make_regressor(self.family, self.coverage, self.config, cats)
        self.upper_model.fit(X, z)
        # A classifier gives every level from one fit (bin families); regressors fit each level.
        at_quantile = getattr(self.upper_model, "at_quantile", None)
        if at_quantile is not None:
            self.point_model = at_quantile(0.5)
        else:
            self.point_model = make_regressor(self.family, 0.5, self.config, cats)
            self.point_model.fit(X, z)

    def predict_encoded(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(point, upper) on the model's target scale, before calibration."""
        if self.pipeline is None:
            raise LifecycleError(f"{type(self).__name__}.predict called before fit")
        return self.predict_matrix(self.pipeline.transform(frame))

    def predict_matrix(
        self, X: np.ndarray, upper_only: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """(point, upper) on the model's scale for an already transformed feature matrix.

        ``upper_only`` skips the point model (callers that serve only the bound, like llm-d's
        routes, halve the tree walks); the point is then NaN.
        """
        if self.pipeline is None or self.point_model is None or self.upper_model is None:
            raise LifecycleError(f"{type(self).__name__}.predict called before fit")
        offset = self.pipeline.offset(X)
        upper = self.upper_model.predict(X) + offset
        if upper_only:
            return np.full(len(X), np.nan), upper
        point = self.point_model.predict(X) + offset
        return point, np.maximum(upper, point)

    def decode(self, z: np.ndarray) -> np.ndarray:
        if self.pipeline is None:
            raise LifecycleError("decode called before fit")
        return np.asarray(np.maximum(self.pipeline.decode_target(z), 0.0), dtype=np.float64)

    def predict(self, frame: pd.DataFrame) -> Bounds:
        point, upper = self.predict_encoded(frame)
        return Bounds(self.decode(point), self.decode(upper))

    def observe(self, done: pd.DataFrame, served: Bounds) -> None:
        """Static model: outcomes after training are not used."""


class MeanForecaster(QuantileForecaster):
    """Squared-error GBM: point = conditional mean, no upper bound beyond it (a reference)."""

    name = "mean"

    def fit(self, train: pd.DataFrame) -> None:
        X, y, pipeline = self._design(train)
        # On the raw scale: the mean of a log-target model would be the geometric mean.
        self.pipeline = FeaturePipeline(pipeline.numeric, pipeline.categories, "identity")
        model = make_regressor(self.family, None, self.config, self.pipeline.categorical_indices)
        model.fit(X, y)
        self.point_model = self.upper_model = model
