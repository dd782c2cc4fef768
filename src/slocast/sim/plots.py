"""Simulator plots: latency CDF per policy and replicas over time; stage-forecast errors."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from slocast.sim.results import PolicyResult

__all__ = ["plot_pipeline", "plot_results"]


@contextmanager
def _two_panels(path: Path, title: str) -> Iterator[Any]:
    """Two side-by-side axes to draw on; then legends and title, saved to ``path`` and closed
    (closed on error too: figures are process-wide)."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    try:
        yield axes
        for axis in axes:
            axis.legend(fontsize=8)
        fig.suptitle(title)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def plot_results(results: Mapping[str, PolicyResult], path: Path, title: str) -> Path:
    """Two panels: the latency CDF (log scale, SLO marked) and replicas over time."""
    with _two_panels(path, title) as (cdf, replicas):
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
    return path


def plot_pipeline(
    errors: Mapping[str, Mapping[str, float]],
    weights: Mapping[str, pd.DataFrame],
    path: Path,
    title: str,
) -> Path:
    """Two panels: each variant's error per stage relative to no smoothing, and the weight the
    online forecaster gave the last value minute by minute (low: a smoother was trusted)."""
    with _two_panels(path, title) as (bars, trust):
        stages = list(errors)
        variants = [v for v in next(iter(errors.values())) if v != "test_minutes"]
        width = 0.8 / len(variants)
        for i, variant in enumerate(variants):
            ratios = [errors[s][variant] / errors[s]["no-smoothing"] for s in stages]
            bars.bar(np.arange(len(stages)) + i * width, ratios, width, label=variant)
        bars.axhline(1.0, color="black", lw=0.8)
        bars.set_xticks(np.arange(len(stages)) + width * (len(variants) - 1) / 2, stages)
        bars.set(ylabel="MAE / no smoothing", title="next-minute error, newer 30 %")
        for stage, frame in weights.items():
            hours = (frame.index - frame.index[0]) / 60.0  # the index counts minutes
            trust.plot(hours, frame["last"], lw=0.8, label=stage)
        trust.set(xlabel="hours", ylabel="weight on the last value", title="online weights")
    return path
