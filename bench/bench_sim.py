"""Benchmark: simulated requests per second for each scenario, vs bare simpy in the same run.

Run: `make bench-sim` (or `python bench/bench_sim.py [SECONDS]`). The baseline is simpy itself:
one timeout event per request and one per service, with no queue, policy or bookkeeping -- the
floor any simpy-based simulator pays. The ratio is what slocast's model of the system adds.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import simpy
from rich.console import Console
from rich.table import Table

from slocast.decisions.autoscaler import HPA, PredictiveAutoscaler
from slocast.decisions.router import LeastLoaded
from slocast.sim import AutoscaleScenario, simulate_autoscale
from slocast.sim.route import RouteScenario, simulate_route
from slocast.sim.traces import load_llm_requests, load_rates

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TWITTER = SHARED / "request_rate/twitter_trace_rps/workload.tbz2"
MOONCAKE = SHARED / "llm_serving/mooncake_fast25/conversation_trace.jsonl.gz"


def bare_simpy(n: int) -> float:
    env = simpy.Environment()
    gaps = np.random.default_rng(0).exponential(0.01, n).tolist()

    def run() -> Any:
        for gap in gaps:
            yield env.timeout(gap)
            env.process(serve())

    def serve() -> Any:
        yield env.timeout(0.05)

    started = time.perf_counter()
    env.process(run())
    env.run()
    return n / (time.perf_counter() - started)


def main() -> None:
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 3600
    rates = load_rates(TWITTER, 0, seconds)
    requests = int(np.rint(rates).sum())
    baseline = bare_simpy(requests)
    table = Table(title=f"simulated requests per second; baseline = bare simpy ({baseline:,.0f}/s)")
    for column in ("scenario", "policy", "requests", "seconds", "requests/s", "vs baseline"):
        table.add_column(column, justify="left" if column in ("scenario", "policy") else "right")
    scenario = AutoscaleScenario()
    for policy in (HPA(), PredictiveAutoscaler(scenario.service_rate, scenario.slo_s)):
        started = time.perf_counter()
        result = simulate_autoscale(rates, policy, scenario)
        elapsed = time.perf_counter() - started
        rate = result.arrived / elapsed
        table.add_row("autoscale", policy.name, f"{result.arrived:,}", f"{elapsed:.1f}",
                      f"{rate:,.0f}", f"{rate / baseline:.2f}x")  # fmt: skip
    if MOONCAKE.is_file():
        trace = load_llm_requests("mooncake", MOONCAKE)
        started = time.perf_counter()
        simulate_route(trace, LeastLoaded(), RouteScenario())
        elapsed = time.perf_counter() - started
        rate = len(trace) / elapsed
        table.add_row("route", "least-loaded", f"{len(trace):,}", f"{elapsed:.1f}",
                      f"{rate:,.0f}", f"{rate / baseline:.2f}x")  # fmt: skip
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
