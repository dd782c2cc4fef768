"""Composite model families for sizing: a quantile ensemble and bin classifiers.

- ``ensemble``: a LightGBM and an XGBoost quantile model at the same level, averaged with weight
  ``ensemble_weight`` (LightGBM's share). Saved as one JSON file holding both libraries' own model
  text, so no pickle is involved.
- ``bins-lightgbm | bins-xgboost | bins-forest | bins-logistic``: the target (on the model scale)
  is cut into ``n_bins`` bins (``uniform`` / ``quantile`` / ``kmeans`` edges) and a classifier
  predicts the bin. The value at level ``q`` is the upper edge of the smallest bin whose
  cumulative predicted probability reaches ``q``: a confident classifier allocates its bin, an
  unsure one is bumped to a higher bin. Saved with joblib (scikit-learn's own persistence); a
  bundle verifies the file's sha256 before loading it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np

from slocast.errors import ConfigError, LifecycleError
from slocast.models.base import GBMConfig
from slocast.models.gbm import LightGBMRegressor, XGBoostRegressor

__all__ = [
    "BIN_FAMILIES",
    "BIN_STRATEGIES",
    "BinRegressor",
    "EnsembleRegressor",
    "GatedRegressor",
    "bin_edges",
]

BIN_STRATEGIES = ("uniform", "quantile", "kmeans")
MIN_BINS, MAX_BINS = 3, 15


class EnsembleRegressor:
    """Weighted mean of LightGBM and XGBoost quantile regressors."""

    family = "ensemble"
    suffix = ".json"

    def __init__(
        self,
        quantile: float | None,
        config: GBMConfig = GBMConfig(),
        categorical: list[int] | None = None,
    ) -> None:
        if not 0.0 <= config.ensemble_weight <= 1.0:
            raise ConfigError("ensemble_weight must be in [0, 1]", field="ensemble_weight")
        self.quantile = quantile
        self.weight = config.ensemble_weight
        self.members = (
            LightGBMRegressor(quantile, config, categorical),
            XGBoostRegressor(quantile, config, categorical),
        )

    def fit(self, X: np.ndarray, y: np.ndarray) -> None:
        for member in self.members:
            member.fit(X, y)

    def predict(self, X: np.ndarray) -> np.ndarray:
        light, xgb = (m.predict(X) for m in self.members)
        return np.asarray(self.weight * light + (1.0 - self.weight) * xgb, dtype=np.float64)

    def save(self, path: Path) -> None:
        light, xgb = (m.native for m in self.members)
        document = {
            "weight": self.weight,
            "lightgbm": light.model_to_string(),
            "xgboost": bytes(xgb.save_raw("json")).decode(),
        }
        path.write_text(json.dumps(document))

    @classmethod
    def load(cls, path: Path, quantile: float | None) -> Self:
        import lightgbm as lgb
        import xgboost as xgb

        document = json.loads(path.read_text())
        model = cls(quantile, GBMConfig(ensemble_weight=float(document["weight"])))
        booster = xgb.Booster()
        booster.load_model(bytearray(document["xgboost"].encode()))
        model.members[0]._native = lgb.Booster(model_str=document["lightgbm"])
        model.members[1]._native = booster
        return model


class GatedRegressor:
    """llm-d's queue-gated ensemble: separate LightGBM models for jobs that arrive to an empty
    queue (gate feature <= 0, e.g. ``num_request_waiting == 0``) and to a queue (> 0), each
    once its side has ``gate_min_rows`` rows; a model on all rows serves a side without one.
    Saved as one JSON file of LightGBM model texts."""

    family = "gated"
    suffix = ".json"

    def __init__(
        self,
        quantile: float | None,
        config: GBMConfig = GBMConfig(),
        categorical: list[int] | None = None,
    ) -> None:
        self.quantile = quantile
        self.config = config
        self.categorical = categorical
        self.gate_index = config.gate_index
        self.sides: dict[str, LightGBMRegressor] = {}

    def _queued(self, X: np.ndarray) -> np.ndarray:
        if self.gate_index < 0:
            raise ConfigError("the gated family needs gate_feature set", field="gate_feature")
        return np.asarray(np.nan_to_num(X[:, self.gate_index], nan=0.0) > 0)

    @property
    def active(self) -> bool:
        """True when both sides have their own model (the ensemble is in use)."""
        return {"idle", "queued"} <= set(self.sides)

    @property
    def native(self) -> Any:
        """The all-rows LightGBM booster (what a single-model consumer gets)."""
        return self.sides["all"].native

    def fit(self, X: np.ndarray, y: np.ndarray) -> None:
        queued = self._queued(X)
        self.sides = {}
        for side, mask in (("all", np.ones(len(y), bool)), ("idle", ~queued), ("queued", queued)):
            if side == "all" or mask.sum() >= self.config.gate_min_rows:
                model = LightGBMRegressor(self.quantile, self.config, self.categorical)
                model.fit(X[mask], y[mask])
                self.sides[side] = model

    def predict(self, X: np.ndarray) -> np.ndarray:
        if "all" not in self.sides:
            raise LifecycleError("GatedRegressor.predict called before fit")
        out = self.sides["all"].predict(X)
        queued = self._queued(X)
        for side, mask in (("idle", ~queued), ("queued", queued)):
            if side in self.sides and mask.any():
                out[mask] = self.sides[side].predict(X[mask])
        return out

    def save(self, path: Path) -> None:
        document = {
            "gate_index": self.gate_index,
            "sides": {name: m.native.model_to_string() for name, m in self.sides.items()},
        }
        path.write_text(json.dumps(document))

    @classmethod
    def load(cls, path: Path, quantile: float | None) -> Self:
        import lightgbm as lgb

        document = json.loads(path.read_text())
        model = cls(quantile, GBMConfig(gate_index=int(document["gate_index"])))
        for name, text in document["sides"].items():
            side = LightGBMRegressor(quantile)
            side._native = lgb.Booster(model_str=text)
            model.sides[name] = side
        return model


def bin_edges(z: np.ndarray, n_bins: int, strategy: str) -> np.ndarray:
    """Increasing bin edges (``n + 1`` values, ``n <= n_bins``) of the values ``z``.

    Bins that would be empty or zero-width are merged away, so fewer bins than asked come back
    when ``z`` has few distinct values.

    >>> bin_edges(np.arange(100.0), 4, "uniform").tolist()
    [0.0, 24.75, 49.5, 74.25, 99.0]
    >>> len(bin_edges(np.array([1.0, 1.0, 1.0, 5.0]), 5, "quantile")) - 1
    1
    """
    if not MIN_BINS <= n_bins <= MAX_BINS:
        raise ConfigError(f"n_bins must be in {MIN_BINS}..{MAX_BINS}, got {n_bins}", field="n_bins")
    if strategy not in BIN_STRATEGIES:
        raise ConfigError(
            f"bin strategy {strategy!r} unknown; known: {', '.join(BIN_STRATEGIES)}",
            field="bin_strategy",
        )
    from sklearn.preprocessing import KBinsDiscretizer

    z = np.asarray(z, dtype=np.float64)
    lo, hi = float(z.min()), float(z.max())
    if hi <= lo:
        return np.array([lo, hi])
    options: dict[str, Any] = {"quantile_method": "averaged_inverted_cdf"}
    discretizer = KBinsDiscretizer(
        n_bins=min(n_bins, len(np.unique(z))),
        encode="ordinal",
        strategy=strategy,
        subsample=None,
        **(options if strategy == "quantile" else {}),
    )
    with warnings.catch_warnings():
        # "Bins whose width are too small are removed": the merge we want, not a problem.
        warnings.simplefilter("ignore", UserWarning)
        discretizer.fit(z.reshape(-1, 1))
    edges = np.unique(np.asarray(discretizer.bin_edges_[0], dtype=np.float64))
    # Keep only edges that leave a non-empty bin below them.
    counts = np.histogram(z, bins=edges)[0]
    return np.concatenate([[edges[0]], edges[1:][counts > 0]])


@dataclass(frozen=True)
class _BinClassifier:
    modules: tuple[str, ...]
    build: Callable[[GBMConfig, list[int]], Any]


def _boosting_options(config: GBMConfig) -> dict[str, Any]:
    """The scikit-learn-style options LightGBM's and XGBoost's classifiers share."""
    return {
        "n_estimators": config.n_estimators,
        "learning_rate": config.learning_rate,
        "max_depth": config.max_depth,
        "subsample": config.subsample,
        "colsample_bytree": config.colsample,
        "reg_lambda": config.reg_lambda,
        "random_state": config.seed,
        "n_jobs": config.threads,
    }


def _lightgbm(config: GBMConfig, categorical: list[int]) -> Any:
    import lightgbm as lgb

    return lgb.LGBMClassifier(
        **_boosting_options(config),
        num_leaves=config.num_leaves,
        min_child_samples=config.min_child_samples,
        subsample_freq=1 if config.subsample < 1 else 0,
        verbosity=-1,
    )


def _xgboost(config: GBMConfig, categorical: list[int]) -> Any:
    import xgboost as xgb

    return xgb.XGBClassifier(**_boosting_options(config), tree_method="hist")


def _forest(config: GBMConfig, categorical: list[int]) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(
        n_estimators=max(10, config.n_estimators // 2),
        max_depth=config.max_depth,
        min_samples_leaf=max(1, config.min_child_samples // 4),
        max_features=config.colsample,
        random_state=config.seed,
        n_jobs=config.threads,
    )


def _logistic(config: GBMConfig, categorical: list[int]) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    numeric = make_pipeline(
        # Sizes span orders of magnitude: a linear model sees them on a log scale.
        FunctionTransformer(np.arcsinh),
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        StandardScaler(),
    )
    categories = make_pipeline(
        SimpleImputer(strategy="constant", fill_value=-1.0),
        OneHotEncoder(handle_unknown="ignore"),
    )
    return make_pipeline(
        ColumnTransformer(
            [
                ("numeric", numeric, _Complement(categorical)),
                ("categorical", categories, categorical),
            ]
        ),
        LogisticRegression(C=1.0 / max(config.reg_lambda, 1e-6), max_iter=2000),
    )


class _Complement:
    """Column selector: every column except ``excluded`` (picklable, unlike a lambda)."""

    def __init__(self, excluded: list[int]) -> None:
        self.excluded = list(excluded)

    def __call__(self, X: np.ndarray) -> list[int]:
        return [i for i in range(X.shape[1]) if i not in self.excluded]


BIN_FAMILIES: dict[str, _BinClassifier] = {
    "bins-lightgbm": _BinClassifier(("lightgbm",), _lightgbm),
    "bins-xgboost": _BinClassifier(("xgboost",), _xgboost),
    "bins-forest": _BinClassifier((), _forest),
    "bins-logistic": _BinClassifier((), _logistic),
}


class BinRegressor:
    """A bin classifier read as a quantile regressor (see the module docstring)."""

    family = ""
    suffix = ".joblib"
    modules: tuple[str, ...] = ()

    @classmethod
    def of(cls, family: str) -> type[BinRegressor]:
        """The class for one ``bins-*`` family."""
        return type(
            f"BinRegressor[{family}]",
            (cls,),
            {"family": family, "modules": BIN_FAMILIES[family].modules, "__module__": __name__},
        )

    def __init__(
        self,
        quantile: float | None,
        config: GBMConfig = GBMConfig(),
        categorical: list[int] | None = None,
    ) -> None:
        if quantile is None:
            raise ConfigError("bin classifiers give quantiles, not the mean", field="family")
        bin_edges(np.arange(MAX_BINS + 1.0), config.n_bins, config.bin_strategy)  # validates
        self.quantile = quantile
        self.config = config
        self.categorical = categorical or []
        self.edges: np.ndarray | None = None
        self.classes: np.ndarray | None = None
        self.classifier: Any = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> None:
        self.edges = bin_edges(y, self.config.n_bins, self.config.bin_strategy)
        labels = np.clip(np.searchsorted(self.edges[1:-1], y, side="left"), 0, len(self.edges) - 2)
        # Classifiers want labels 0..k-1 with every label present.
        self.classes, encoded = np.unique(labels, return_inverse=True)
        if len(self.classes) == 1:
            self.classifier = None
            return
        self.classifier = BIN_FAMILIES[self.family].build(self.config, self.categorical)
        self.classifier.fit(X, encoded)

    def at_quantile(self, quantile: float) -> BinRegressor:
        """The same fitted classifier read at another level (no second fit)."""
        view = type(self)(quantile, self.config, self.categorical)
        view.edges, view.classes, view.classifier = self.edges, self.classes, self.classifier
        return view

    def probabilities(self, X: np.ndarray) -> np.ndarray:
        """Predicted probability of every bin, shape (rows, bins)."""
        if self.edges is None or self.classes is None:
            raise LifecycleError(f"{type(self).__name__}.predict called before fit")
        full = np.zeros((len(X), len(self.edges) - 1))
        if self.classifier is None:
            full[:, self.classes[0]] = 1.0
        else:
            full[:, self.classes] = self.classifier.predict_proba(X)
        return full

    def predict(self, X: np.ndarray) -> np.ndarray:
        assert self.quantile is not None
        cumulative = np.cumsum(self.probabilities(X), axis=1)
        # Tolerance: probabilities that sum to 0.9999999 still reach a level of 1.
        reached = cumulative >= min(self.quantile, 1.0) - 1e-9
        chosen = np.where(reached.any(axis=1), reached.argmax(axis=1), cumulative.shape[1] - 1)
        assert self.edges is not None
        return np.asarray(self.edges[chosen + 1], dtype=np.float64)

    def save(self, path: Path) -> None:
        import joblib

        if self.edges is None:
            raise LifecycleError("cannot save an unfitted bin classifier")
        joblib.dump(
            {
                "edges": self.edges,
                "classes": self.classes,
                "classifier": self.classifier,
                "config": self.config,
            },
            path,
        )

    @classmethod
    def load(cls, path: Path, quantile: float | None) -> Self:
        import joblib

        state = joblib.load(path)
        model = cls(quantile, state["config"])
        model.edges, model.classes = state["edges"], state["classes"]
        model.classifier = state["classifier"]
        return model
