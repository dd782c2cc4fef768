"""Simulator plots: latency CDF per policy and replicas over time."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from slocast.sim.results import PolicyResult

__all__ = ["plot_results"]


def plot_results(results: Mapping[str, PolicyResult], path: Path, title: str) -> Path:
    """Two panels: the latency CDF (log scale, SLO marked) and replicas over time."""
    fig, (cdf, replicas) = plt.subplots(1, 2, figsize=(13, 4.5))
    try:
        slo = next(iter(results.values())).slo_s if results else None
        for name, result in results.items():
            lat = np.sort(np.asarray(result.latencies, dtype=np.float64))
            if len(lat):
                cdf.plot(lat * 1000.0, np.arange(1, len(lat) + 1) / len(lat), label=name, lw=1.2)
            if result.timeline:
                times, counts = zip(*result.timeline, strict=True)
                replicas.step(np.asarray(times) / 3600.0, counts, where="post", label=name, lw=1)
        if slo is not None:
            cdf.axvline(slo * 1000.0, color="black", ls="--", lw=1, label="SLO")
        cdf.set(
            xscale="log", xlabel="latency (ms)", ylabel="share of requests", title="latency CDF"
        )
        replicas.set(xlabel="hours", ylabel="replicas", title="replicas over time")
        for axis in (cdf, replicas):
            axis.legend(fontsize=8)
        fig.suptitle(title)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path
