"""Discrete-event simulator (simpy) replaying real traces through the decision layer."""

from slocast.sim.autoscale import AutoscaleScenario, simulate_autoscale
from slocast.sim.results import PolicyResult

__all__ = ["AutoscaleScenario", "PolicyResult", "simulate_autoscale"]
