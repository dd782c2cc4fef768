"""Gradient-boosted regressors for quantile and mean objectives: LightGBM, XGBoost, CatBoost.

Each wraps its library's native training API and native file format, so a saved model is the
library's own artifact (loadable without slocast) and the compiled-inference path can read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import numpy as np

from slocast.errors import LifecycleError
from slocast.models.base import GBMConfig

__all__ = ["CatBoostRegressor", "LightGBMRegressor", "XGBoostRegressor"]


class _GBMRegressor:
    """What the families share: construction, the fitted native object, saving and loading."""

    family = ""
    suffix = ""

    def __init__(
        self,
        quantile: float | None,
        config: GBMConfig = GBMConfig(),
        categorical: list[int] | None = None,
    ) -> None:
        self.quantile = quantile
        self.config = config
        self.categorical = categorical or []
        self._native: Any = None

    def _fitted(self) -> Any:
        if self._native is None:
            raise LifecycleError(f"{type(self).__name__}.predict called before fit")
        return self._native

    def save(self, path: Path) -> None:
        self._fitted().save_model(str(path))

    @classmethod
    def load(cls, path: Path, quantile: float | None) -> Self:
        model = cls(quantile)
        model._native = cls._load_native(path)
        return model

    @staticmethod
    def _load_native(path: Path) -> Any:
        raise NotImplementedError

    @property
    def native(self) -> Any:
        """The library's own model object (LightGBM Booster, XGBoost Booster, CatBoost model)."""
        return self._fitted()


class LightGBMRegressor(_GBMRegressor):
    """LightGBM with ``objective="quantile"`` (``alpha`` = level) or ``"l2"`` (mean)."""

    family = "lightgbm"
    suffix = ".txt"

    def fit(self, X: np.ndarray, y: np.ndarray) -> None:
        import lightgbm as lgb

        c = self.config
        params: dict[str, Any] = {
            "objective": "l2" if self.quantile is None else "quantile",
            "learning_rate": c.learning_rate,
            "num_leaves": c.num_leaves,
            "max_depth": c.max_depth,
            "min_data_in_leaf": min(c.min_child_samples, max(2, len(y) // 10)),
            "bagging_fraction": c.subsample,
            "bagging_freq": 1 if c.subsample < 1 else 0,
            "feature_fraction": c.colsample,
            "lambda_l2": c.reg_lambda,
            "seed": c.seed,
            "num_threads": c.threads,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }
        if self.quantile is not None:
            params["alpha"] = self.quantile
        data = lgb.Dataset(X, y, categorical_feature=self.categorical or "auto", free_raw_data=True)
        self._native = lgb.train(params, data, num_boost_round=c.n_estimators)

    def predict(self, X: np.ndarray) -> np.ndarray:
        raw = self._fitted().predict(X, num_threads=self.config.threads)
        return np.asarray(raw, dtype=np.float64)

    @staticmethod
    def _load_native(path: Path) -> Any:
        import lightgbm as lgb

        return lgb.Booster(model_file=str(path))


class XGBoostRegressor(_GBMRegressor):
    """XGBoost with ``reg:quantileerror`` or ``reg:squarederror``; categorical codes as numbers."""

    family = "xgboost"
    suffix = ".json"

    def fit(self, X: np.ndarray, y: np.ndarray) -> None:
        import xgboost as xgb

        c = self.config
        params: dict[str, Any] = {
            "objective": "reg:squarederror" if self.quantile is None else "reg:quantileerror",
            "eta": c.learning_rate,
            "max_depth": c.max_depth,
            "min_child_weight": 1,
            "subsample": c.subsample,
            "colsample_bytree": c.colsample,
            "lambda": c.reg_lambda,
            "seed": c.seed,
            "nthread": c.threads,
            "tree_method": "hist",
        }
        if self.quantile is not None:
            params["quantile_alpha"] = self.quantile
        self._native = xgb.train(params, xgb.DMatrix(X, y), num_boost_round=c.n_estimators)

    def predict(self, X: np.ndarray) -> np.ndarray:
        import xgboost as xgb

        return np.asarray(self._fitted().predict(xgb.DMatrix(X)), dtype=np.float64)

    @staticmethod
    def _load_native(path: Path) -> Any:
        import xgboost as xgb

        return xgb.Booster(model_file=str(path))


class CatBoostRegressor(_GBMRegressor):
    """CatBoost with ``Quantile:alpha=q`` or ``RMSE`` (install the ``catboost`` extra)."""

    family = "catboost"
    suffix = ".cbm"

    def fit(self, X: np.ndarray, y: np.ndarray) -> None:
        from catboost import CatBoostRegressor as _CatBoost

        c = self.config
        loss = "RMSE" if self.quantile is None else f"Quantile:alpha={self.quantile}"
        self._native = _CatBoost(
            loss_function=loss,
            iterations=c.n_estimators,
            learning_rate=c.learning_rate,
            depth=min(c.max_depth, 10),
            l2_leaf_reg=c.reg_lambda,
            random_seed=c.seed,
            thread_count=c.threads,
            verbose=False,
            allow_writing_files=False,
        )
        self._native.fit(X, y)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self._fitted().predict(X), dtype=np.float64)

    @staticmethod
    def _load_native(path: Path) -> Any:
        from catboost import CatBoostRegressor as _CatBoost

        model = _CatBoost()
        model.load_model(str(path))
        return model
