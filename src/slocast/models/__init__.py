"""Model families (quantile GBMs, mean) and baselines behind one fit/predict protocol."""

from slocast.models.base import Bounds, Forecaster, GBMConfig, Regressor
from slocast.models.baselines import (
    DecayingHistogram,
    LastValueBaseline,
    UserRequestBaseline,
    VPABaseline,
)
from slocast.models.families import available_families, load_regressor, make_regressor
from slocast.models.quantile import MeanForecaster, QuantileForecaster

__all__ = [
    "Bounds",
    "DecayingHistogram",
    "Forecaster",
    "GBMConfig",
    "LastValueBaseline",
    "MeanForecaster",
    "QuantileForecaster",
    "Regressor",
    "UserRequestBaseline",
    "VPABaseline",
    "available_families",
    "load_regressor",
    "make_regressor",
]
