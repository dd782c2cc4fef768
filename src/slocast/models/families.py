"""The registry of model families: name -> class, what each needs installed, how to load one.

Regression families fit one quantile (or the mean) directly; the composite families
(``ensemble``, ``bins-*``) are built from them or from classifiers but obey the same
:class:`~slocast.models.base.Regressor` protocol, so every forecaster, bundle and server works
with all of them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from slocast.errors import ConfigError
from slocast.models.base import GBMConfig, Regressor, RegressorClass
from slocast.models.composite import (
    BIN_FAMILIES,
    BinRegressor,
    EnsembleRegressor,
    GatedRegressor,
)
from slocast.models.gbm import CatBoostRegressor, LightGBMRegressor, XGBoostRegressor

__all__ = [
    "CLASSIFICATION_FAMILIES",
    "FAMILIES",
    "REGRESSION_FAMILIES",
    "available_families",
    "load_regressor",
    "make_regressor",
]

FAMILIES: dict[str, RegressorClass] = {
    "lightgbm": LightGBMRegressor,
    "xgboost": XGBoostRegressor,
    "catboost": CatBoostRegressor,
    "ensemble": EnsembleRegressor,
    "gated": GatedRegressor,
    **{name: BinRegressor.of(name) for name in BIN_FAMILIES},
}
REGRESSION_FAMILIES = ("lightgbm", "xgboost", "catboost", "ensemble")
CLASSIFICATION_FAMILIES = tuple(BIN_FAMILIES)
# The Python modules each family needs (extras: xgboost, catboost, tune).
_MODULES: dict[str, tuple[str, ...]] = {
    "lightgbm": ("lightgbm",),
    "xgboost": ("xgboost",),
    "catboost": ("catboost",),
    "ensemble": ("lightgbm", "xgboost"),
    "gated": ("lightgbm",),
    **{name: ("sklearn", *BIN_FAMILIES[name].modules) for name in BIN_FAMILIES},
}
_EXTRAS = {"xgboost": "xgboost", "catboost": "catboost", "sklearn": "tune"}


def available_families() -> list[str]:
    """Families whose libraries are installed here."""
    return [
        f
        for f, modules in _MODULES.items()
        if all(importlib.util.find_spec(m) is not None for m in modules)
    ]


def _family_class(family: str) -> RegressorClass:
    if family not in FAMILIES:
        raise ConfigError(
            f"unknown model family {family!r}; known: {', '.join(FAMILIES)}", field="family"
        )
    missing = [m for m in _MODULES[family] if importlib.util.find_spec(m) is None]
    if missing:
        extra = _EXTRAS.get(missing[0], missing[0])
        raise ConfigError(
            f"model family {family!r} needs {missing[0]}: pip install 'slocast[{extra}]'",
            field="family",
        )
    return FAMILIES[family]


def make_regressor(
    family: str,
    quantile: float | None,
    config: GBMConfig = GBMConfig(),
    categorical: list[int] | None = None,
) -> Regressor:
    """A new, unfitted regressor; ``quantile=None`` asks for the mean (squared-error) model."""
    return _family_class(family)(quantile, config, categorical)


def load_regressor(family: str, path: Path, quantile: float | None) -> Regressor:
    return _family_class(family).load(path, quantile)
