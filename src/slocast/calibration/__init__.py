"""Conformal calibration: split CQR with signed one-sided scores, Mondrian groups, ACI."""

from slocast.calibration.aci import AdaptiveConformal
from slocast.calibration.conformal import POOLED, ConformalUpper, conformal_quantile, pinball_loss

__all__ = ["POOLED", "AdaptiveConformal", "ConformalUpper", "conformal_quantile", "pinball_loss"]
