"""The standard line-up of methods an evaluation compares, built from plain parameters."""

from __future__ import annotations

from slocast.calibration import ConformalUpper
from slocast.calibration.forecaster import CalibratedForecaster, CalibrationParams, build_slocast
from slocast.models.base import Forecaster, GBMConfig
from slocast.models.baselines import LastValueBaseline, UserRequestBaseline, VPABaseline
from slocast.models.quantile import QuantileForecaster
from slocast.schema import DomainSpec

__all__ = ["standard_methods"]


def standard_methods(
    spec: DomainSpec,
    coverage: float,
    family: str = "lightgbm",
    config: GBMConfig = GBMConfig(),
    params: CalibrationParams = CalibrationParams(),
) -> list[Forecaster]:
    """slocast, the raw quantile model, plain split CQR, and today's baselines.

    The GBM is fitted once (by ``quantile_raw``, which comes first) and shared.
    """
    base = QuantileForecaster(spec, coverage, family, config)
    plain = CalibratedForecaster(
        base,
        ConformalUpper(min_group_size=2**62, window=2**62),
        aci=None,
        use_request=False,
        online=False,
        fit_base=False,
        name="cqr",
    )
    methods: list[Forecaster] = [base, build_slocast(base, params, fit_base=False), plain]
    if spec.user_request is not None:
        methods.append(UserRequestBaseline(spec))
    methods += [VPABaseline(spec), LastValueBaseline(spec)]
    return methods
