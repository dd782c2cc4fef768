"""Pipeline stage series (Alibaba GenAI): a learned cross-stage load predictor for smoothing.

The reference smoother blended each stage with its neighbours through a graph-attention model
whose weights were never trained. Here the blend is learned: a ridge regression per stage
predicts the next minute's (log) stage latency from the stage's own recent minutes, its
pipeline neighbours' last minute and the request rate -- the same inputs the attention model
had -- fitted on the older part of the series and scored on the newer part. It is compared
with no smoothing (each stage's last value) and with the untrained variant (the same blend with
random, seeded weights), so the gain of learning is measured, not assumed.

A ridge model rather than attention: with ~1,200 minutes of four stages, a linear blend of a
handful of lags is what the data can support without overfitting, and its weights are readable.
At a one-minute horizon it still does not beat no smoothing: the series change regime, and
weights fitted on the older part are wrong on the newer. The ``online`` variant learns while it
forecasts instead (:class:`~slocast.decisions.hedge.HedgeForecaster`: weights over the stage's
own last value, means and medians, moved by each minute's errors); that one beats both.

Stages (``KIND`` ``alibaba-stages``, a directory holding the trace's CSVs):
``queue`` (``queue_rt_raw``), ``update`` (``pipeline_update_latency``), ``inference``
(``pipeline_inference_data``), ``predict`` (``model_predict_data``), in that order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from slocast.decisions.hedge import HedgeForecaster
from slocast.errors import DataFormatError, EmptyDataError

__all__ = ["PIPELINE", "StageSeries", "compare_smoothers", "load_stage_series", "online_weights"]

PIPELINE: dict[str, str] = {
    "queue": "queue_rt_raw_anon.csv.gz",
    "update": "pipeline_update_latency_anon.csv.gz",
    "inference": "pipeline_inference_data_anon.csv.gz",
    "predict": "model_predict_data_anon.csv.gz",
}
LAGS = 3


@dataclass(frozen=True)
class StageSeries:
    """Per-minute log mean latency per stage (columns in pipeline order) and request rate."""

    latency: pd.DataFrame
    rate: pd.Series


def load_stage_series(directory: Path) -> StageSeries:
    frames = {}
    for stage, name in PIPELINE.items():
        path = directory / name
        if not path.is_file():
            raise DataFormatError(f"stage file {name} missing", source=str(directory))
        raw = pd.read_csv(path)
        if not {"timestamp_anon", "value"} <= set(raw.columns):
            raise DataFormatError("needs timestamp_anon and value columns", source=str(path))
        minute = (raw["timestamp_anon"] // 60).astype(np.int64)
        frames[stage] = np.log1p(raw.groupby(minute)["value"].mean())
    latency = pd.DataFrame(frames).sort_index()
    # A minute where a stage reported nothing keeps its last known level.
    latency = latency.reindex(range(latency.index.min(), latency.index.max() + 1)).ffill().dropna()
    qps_path = directory / "qps.csv.gz"
    rate = pd.Series(0.0, index=latency.index)
    if qps_path.is_file():
        qps = pd.read_csv(qps_path)
        by_minute = qps.groupby((qps["timestamp_anon"] // 60).astype(np.int64))["value"].sum()
        rate = by_minute.reindex(latency.index).ffill().fillna(0.0)
    if len(latency) < 100:
        raise EmptyDataError("fewer than 100 minutes with every stage", source=str(directory))
    return StageSeries(latency, rate)


def _design(
    series: StageSeries, stage: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Changes, not levels: the stage's last value is the anchor, the features are its recent
    changes, its neighbours' and the request rate's last change, the target is the next change.
    Levels drift over a day; changes carry over (and zero weights reduce to no smoothing).

    Returns (features, target change, anchor = the stage's last value, minute positions)."""
    stages = list(series.latency.columns)
    position = stages.index(stage)
    neighbours = [stages[i] for i in (position - 1, position + 1) if 0 <= i < len(stages)]
    lat = series.latency
    anchor = lat[stage].shift(1)
    columns = [lat[stage].shift(k) - anchor for k in range(2, LAGS + 2)]
    columns += [lat[n].shift(1) - lat[n].shift(2) for n in neighbours]
    rate = np.log1p(series.rate)
    columns.append(rate.shift(1) - rate.shift(2))
    X = pd.concat(columns, axis=1).to_numpy(np.float64)
    y = (lat[stage] - anchor).to_numpy(np.float64)
    base = anchor.to_numpy(np.float64)
    keep = np.isfinite(X).all(axis=1) & np.isfinite(y)
    return X[keep], y[keep], base[keep], np.flatnonzero(keep)


def _online(values: np.ndarray) -> tuple[np.ndarray, pd.DataFrame]:
    """The online expert forecast of each value, made before it arrived (NaN for the first),
    and the expert weights it was made with."""
    forecaster = HedgeForecaster()
    out = np.empty(len(values))
    weights = []
    for i, value in enumerate(values):
        out[i] = forecaster.predict()
        weights.append(forecaster.weights())
        forecaster.update(float(value))
    return out, pd.DataFrame(weights)


def online_weights(series: StageSeries) -> dict[str, pd.DataFrame]:
    """Per stage, the online forecaster's expert weights minute by minute (which smoother it
    trusted when)."""
    return {
        str(stage): _online(series.latency[stage].to_numpy(np.float64))[1].set_axis(
            series.latency.index
        )
        for stage in series.latency.columns
    }


def compare_smoothers(
    series: StageSeries, train_fraction: float = 0.7, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Mean absolute error (log latency, newer part) per stage for: ``no-smoothing`` (last
    value), ``untrained`` (random blend weights), ``learned`` (ridge on the changes), and
    ``online`` (expert weights learned as the minutes arrive, from the first one)."""
    from sklearn.linear_model import RidgeCV

    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, float]] = {}
    for stage in series.latency.columns:
        X, change, anchor, minutes = _design(series, stage)
        split = int(len(change) * train_fraction)
        test_X, test_y = X[split:], anchor[split:] + change[split:]
        # Untrained: the same blend with random weights (as the reference's attention ran).
        weights = rng.normal(0.0, 1.0 / np.sqrt(X.shape[1]), X.shape[1])
        model = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(X[:split], change[:split])
        predictions = {
            "no-smoothing": anchor[split:],
            "untrained": anchor[split:] + test_X @ weights,
            "learned": anchor[split:] + model.predict(test_X),
            "online": _online(series.latency[stage].to_numpy(np.float64))[0][minutes][split:],
        }
        out[str(stage)] = {
            name: float(np.mean(np.abs(test_y - value))) for name, value in predictions.items()
        }
        out[str(stage)]["test_minutes"] = float(len(test_y))
    return out
