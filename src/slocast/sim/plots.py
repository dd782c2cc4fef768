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
            if axis.get_legend_handles_labels()[0]:  # an axis whose ticks name what it shows
                axis.legend(fontsize=8)
        fig.suptitle(title)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def plot_results(results: Mapping[str, PolicyResult], path: Path, title: str) -> Path:
    """Two panels: the latency CDF (log scale, SLO marked), and replicas over time where the
    policies scale a fleet -- or, on a fixed fleet (routing, placement), each policy's p99 and
    share of requests within the SLO."""
    with _two_panels(path, title) as (cdf, right):
        slo = next(iter(results.values())).slo_s if results else None
        for name, result in results.items():
            lat = np.sort(np.asarray(result.latencies, dtype=np.float64))
            if len(lat):
                cdf.plot(lat * 1000.0, np.arange(1, len(lat) + 1) / len(lat), label=name, lw=1.2)
        if slo is not None:
            cdf.axvline(slo * 1000.0, color="black", ls="--", lw=1, label="SLO")
        cdf.set(
            xscale="log", xlabel="latency (ms)", ylabel="share of requests", title="latency CDF"
        )
        if any(len(r.timeline) > 1 for r in results.values()):
            _replicas(right, results)
        else:
            _tails(right, results)
    return path


def _replicas(axis: Any, results: Mapping[str, PolicyResult]) -> None:
    for name, result in results.items():
        if result.timeline:
            times, counts = zip(*result.timeline, strict=True)
            axis.step(np.asarray(times) / 3600.0, counts, where="post", label=name, lw=1)
    axis.set(xlabel="hours", ylabel="replicas", title="replicas over time")


def _tails(axis: Any, results: Mapping[str, PolicyResult]) -> None:
    """p99 per policy (bars, log scale) with the share within the SLO written on each."""
    names = list(results)
    summaries = [results[n].summary() for n in names]
    positions = np.arange(len(names))
    colours = [f"C{i}" for i in range(len(names))]  # the CDF's colours, policy by policy
    p99 = [s["p99_ms"] for s in summaries]
    bars = axis.bar(positions, p99, color=colours)
    for bar, summary in zip(bars, summaries, strict=True):
        axis.annotate(
            f"{summary['slo_attainment_pct']:.1f} %",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center", va="bottom", fontsize=8,
        )  # fmt: skip
    axis.set_xticks(positions, names, rotation=30, ha="right", fontsize=8)
    finite = [v for v in p99 if np.isfinite(v) and v > 0]
    # Log where the policies' tails are orders of magnitude apart (a saturated fleet).
    wide = len(finite) > 1 and max(finite) / min(finite) > 10
    axis.set(
        yscale="log" if wide else "linear",
        ylabel="p99 latency (ms)",
        title="p99 (within the SLO on each bar)",
    )


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
