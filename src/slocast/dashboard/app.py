"""The slocast dashboard (Streamlit): predict, replay a trace, inspect models and decisions.

Started by ``slocast dashboard`` (which passes its options after ``--``); reads bundles through
:func:`slocast.artifacts.load_bundle`, a trainer through its HTTP API and simulator results
from ``slocast simulate --json`` output -- never private state.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from slocast.artifacts import ModelBundle, load_bundle
from slocast.datasets import load_dataset
from slocast.errors import SlocastError

# Named operating points on one calibrated bound: the coverage each strategy asks for
# (balanced = the bundle's own promise).
STRATEGY_COVERAGE = {"small-waste": 0.75, "tiny-under-alloc": 0.99}


def _options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="slocast dashboard")
    parser.add_argument("--bundle", action="append", default=[])
    parser.add_argument("--trainer", default=None)
    parser.add_argument("--trace", action="append", default=[])
    parser.add_argument("--sim-results", default=None)
    return parser.parse_args(sys.argv[1:])


@st.cache_resource
def _bundle(path: str) -> ModelBundle:
    # Native models: feature importances come from the libraries' own boosters.
    return load_bundle(Path(path), prefer_compiled=False)


@st.cache_data
def _trace(arg: str) -> pd.DataFrame:
    return load_dataset(arg).frame


def _allocations(bundle: ModelBundle, frame: pd.DataFrame, coverage: float) -> pd.DataFrame:
    bounds = bundle.predict_frame(frame, coverage)
    out = pd.DataFrame({"point": bounds.point, f"upper@{coverage:.3f}": bounds.upper})
    out["balanced"] = bundle.predict_frame(frame).upper
    for name, coverage in STRATEGY_COVERAGE.items():
        out[name] = bundle.predict_frame(frame, coverage).upper
    return out


def _parse_jobs(text: str, uploaded: Any) -> pd.DataFrame:
    if uploaded is not None:
        if str(uploaded.name).endswith(".csv"):
            return pd.read_csv(io.BytesIO(uploaded.getvalue()))
        text = uploaded.getvalue().decode()
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return pd.DataFrame(rows)


def page_predict(bundles: dict[str, ModelBundle]) -> None:
    st.header("Predict")
    name = st.selectbox("bundle", list(bundles), key="predict_bundle")
    bundle = bundles[name]
    spec = bundle.spec
    st.markdown(
        f"domain `{spec.name}` · promise {bundle.coverage:.2f} · version `{bundle.version}`"
    )
    example: dict[str, object] = {c: 0.0 for c in spec.numeric if c not in spec.optional}
    example.update({c: "" for c in spec.categorical})
    text = st.text_area("jobs (JSON lines)", json.dumps(example), key="jobs")
    uploaded = st.file_uploader("…or upload CSV / JSON lines", type=["csv", "jsonl", "json"])
    coverage = st.slider("coverage of the bound", 0.55, 0.995, float(bundle.coverage), step=0.005)
    try:
        frame = _parse_jobs(text, uploaded)
        for column in spec.features:
            if column not in frame:
                frame[column] = np.nan
        table = _allocations(bundle, frame, coverage)
    except (SlocastError, ValueError, KeyError) as exc:
        st.error(f"cannot predict: {exc}")
        return
    # Tables (not the canvas grid): a few rows, readable and selectable as text.
    st.table(table.head(50))
    first = table.iloc[0][f"upper@{coverage:.3f}"]
    st.markdown(f"**first job: upper bound {first:,.4g} {spec.unit} at coverage {coverage:.3f}**")


def page_simulation(bundles: dict[str, ModelBundle], traces: list[str]) -> None:
    st.header("Simulation mode")
    if not traces:
        st.info("start the dashboard with --trace KIND:PATH to replay a trace")
        return
    name = st.selectbox("bundle", list(bundles), key="sim_bundle")
    trace = st.selectbox("trace", traces)
    rows = st.slider("jobs to replay", 50, 2000, 200, step=50)
    delay = st.number_input("delay per step (s)", 0.0, 2.0, 0.0, step=0.05)
    if not st.button("replay", key="replay"):
        return
    bundle = bundles[name]
    frame = _trace(trace).tail(rows).reset_index(drop=True)
    y = frame[bundle.spec.target].to_numpy(np.float64)
    chart, stats = st.empty(), st.empty()
    step = max(1, rows // 20)
    uppers = np.empty(0)
    for start in range(0, rows, step):
        chunk = frame.iloc[start : start + step]
        uppers = np.concatenate([uppers, bundle.predict_frame(chunk).upper])
        seen = y[: len(uppers)]
        covered = uppers >= seen
        history = pd.DataFrame(
            {
                "actual": seen,
                "upper bound": uppers,
                "running coverage": np.cumsum(covered) / np.arange(1, len(seen) + 1),
                "cumulative waste": np.cumsum(np.where(covered, uppers - seen, 0.0)),
                "under-allocations": np.cumsum(~covered),
            }
        )
        chart.line_chart(history[["actual", "upper bound"]])
        stats.markdown(
            f"replayed **{len(seen)}** jobs · running coverage "
            f"**{history['running coverage'].iloc[-1]:.3f}** · under-allocations "
            f"**{int(history['under-allocations'].iloc[-1])}**"
        )
        time.sleep(float(delay))
    st.line_chart(history[["running coverage"]])
    st.line_chart(history[["cumulative waste", "under-allocations"]])


def _gating(trainer: str | None) -> list[dict[str, object]]:
    if not trainer:
        return []
    with urllib.request.urlopen(f"{trainer.rstrip('/')}/v1/bundles/gating", timeout=5) as reply:
        data = json.loads(reply.read())
    return list(data.get("decisions", data) if isinstance(data, dict) else data)


def page_models(bundles: dict[str, ModelBundle], trainer: str | None) -> None:
    st.header("Models")
    rows = []
    for name, bundle in bundles.items():
        metrics = json.loads((bundle.path / "metrics.json").read_text())
        rows.append(
            {
                "bundle": name,
                "domain": bundle.spec.name,
                "version": bundle.version,
                "family": bundle.manifest["family"],
                "promised coverage": bundle.coverage,
                "observed coverage": metrics.get("test", {}).get("coverage")
                if isinstance(metrics.get("test"), dict)
                else metrics.get("heldout_coverage"),
            }
        )
    st.table(pd.DataFrame(rows))
    name = st.selectbox("feature importances of", list(bundles), key="importance_bundle")
    bundle = bundles[name]
    booster = getattr(bundle.forecaster.base.upper_model, "native", None)
    pipeline = bundle.forecaster.base.pipeline
    if booster is not None and hasattr(booster, "feature_importance") and pipeline is not None:
        gains = booster.feature_importance(importance_type="gain")
        importance = pd.Series(gains, index=list(pipeline.columns)).sort_values()
        st.bar_chart(importance)
    else:
        st.caption("feature importances are shown for LightGBM bundles")
    if trainer:
        st.subheader("gating history")
        try:
            st.dataframe(pd.DataFrame(_gating(trainer)))
        except OSError as exc:
            st.warning(f"trainer unreachable: {exc}")


def page_decisions(sim_results: str | None) -> None:
    st.header("Decisions")
    if not sim_results or not Path(sim_results).is_file():
        st.info("run `slocast simulate … --json > results.json` and pass --sim-results")
        return
    data = json.loads(Path(sim_results).read_text())
    st.markdown(f"scenario **{data['scenario']}** · trace `{data['trace']}`")
    table = pd.DataFrame(data["policies"]).T
    st.table(table)
    # The headline number of each scenario: attainment for traffic, forecast error for stages.
    for headline in ("slo_attainment_pct", "mae_log_latency"):
        if headline in table:
            st.bar_chart(table[headline])


def main() -> None:
    options = _options()
    st.set_page_config(page_title="slocast", layout="wide")
    st.title("slocast")
    bundles = {Path(p).name: _bundle(p) for p in options.bundle}
    page = st.sidebar.radio("page", ["Predict", "Simulation", "Models", "Decisions"])
    if not bundles and page != "Decisions":
        st.warning("start the dashboard with --bundle DIR (from `slocast train` or `tune`)")
        return
    if page == "Predict":
        page_predict(bundles)
    elif page == "Simulation":
        page_simulation(bundles, options.trace)
    elif page == "Models":
        page_models(bundles, options.trainer)
    else:
        page_decisions(options.sim_results)


if __name__ == "__main__":  # `streamlit run` executes this file as __main__
    main()
