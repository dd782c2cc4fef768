"""Decisions built on calibrated bounds: sizing with retries, routing, scaling, placement.

This package depends only on plain arrays and :class:`~slocast.schema.Prediction`, never on a
model class, so any forecaster (or a remote prediction server) can drive it.
"""

from slocast.decisions.allocator import RetryOutcome, RetryPolicy, simulate_retries

__all__ = ["RetryOutcome", "RetryPolicy", "simulate_retries"]
