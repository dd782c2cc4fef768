"""Benchmark: serving latency, in process and over HTTP, vs native XGBoost in the same run.

Run: `make bench-serve`. Trains TTFT/TPOT bundles on the bundled llm-d H200 trace, then prints
p50/p99 per call and throughput for:
  - native XGBoost / LightGBM one-row and 1,000-row predict (the baseline: a bare model call),
  - slocast's data plane (features + model + conformal offsets + cache), cache miss and hit,
  - a real `slocast serve http` process: /predict and /predict/bulk/strict (1, 100, 1,000 rows).
The ratio column divides by native XGBoost's in-process call for the same number of rows.
"""

from __future__ import annotations

import gzip
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import xgboost as xgb
from rich.console import Console
from rich.table import Table

from slocast.artifacts import ModelBundle, load_bundle, save_bundle
from slocast.calibration.forecaster import CalibrationParams, fit_on_history
from slocast.datasets import load_dataset
from slocast.models import QuantileForecaster
from slocast.serving import DataPlane, LRUCache

TRACE = (
    Path(__file__).resolve().parents[1]
    / "data/llm_serving/llmd_h200_traces/chatbot-synthetic-h200.jsonl.gz"
)


def timings(call: Callable[[], object], repeat: int) -> list[float]:
    for _ in range(min(20, repeat)):
        call()
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        out.append(time.perf_counter() - started)
    return out


def rows(n: int) -> list[dict[str, float]]:
    with gzip.open(TRACE, "rt") as handle:
        base = [json.loads(line) for line in handle]
    for row in base:
        row.pop("actual_ttft_ms"), row.pop("actual_tpot_ms")
    return [base[i % len(base)] for i in range(n)]


def bench_grpc(bundles: list[ModelBundle], record: Callable[..., None]) -> None:
    """PredictBatch (1,000 rows) and PredictStream (200 messages per stream) on a real server."""
    import grpc

    from slocast.serving.grpc import create_grpc_server
    from slocast.serving.pb import slocast_pb2 as pb
    from slocast.serving.pb import slocast_pb2_grpc as pb_grpc

    server, port = create_grpc_server(DataPlane(bundles, LRUCache(0)), "127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.PredictorStub(channel)
            items = [
                pb.Item(
                    numeric={
                        k: float(v)
                        for k, v in r.items()
                        if v is not None and not isinstance(v, str)
                    }
                )
                for r in rows(1000)
            ]
            batch = pb.PredictBatchRequest(domain="llm-ttft", items=items)
            record("gRPC PredictBatch", 1000, lambda: stub.PredictBatch(batch), 100)
            one = pb.PredictRequest(domain="llm-ttft", item=items[0])
            record("gRPC Predict", 1, lambda: stub.Predict(one), 500)
            stream = [pb.PredictRequest(domain="llm-ttft", item=i) for i in items[:200]]
            record(
                "gRPC PredictStream (200 msgs)",
                200,
                lambda: list(stub.PredictStream(iter(stream))),
                30,
            )
    finally:
        server.stop(grace=None)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="slocast-bench-"))
    dirs = []
    for kind in ("llmd-ttft", "llmd-tpot"):
        data = load_dataset(f"{kind}:{TRACE}")
        forecaster, _, _ = fit_on_history(
            data.frame, QuantileForecaster(data.spec, 0.9), CalibrationParams(), 0.2
        )
        save_bundle(forecaster, work / kind, {"dataset": kind}, {}, compile_models=True)
        dirs.append(work / kind)
    bundles = [load_bundle(d) for d in dirs]  # compiled (TL2cgen) where the machine can
    native_bundles = [load_bundle(d, prefer_compiled=False) for d in dirs]
    ttft = bundles[0]
    pipeline = ttft.forecaster.base.pipeline
    assert pipeline is not None
    X = pipeline.transform_records(rows(1000))
    z = ttft.forecaster.base.upper_model.predict(X)  # type: ignore[union-attr]
    booster = xgb.train(
        {"objective": "reg:quantileerror", "quantile_alpha": 0.9, "max_depth": 6, "nthread": 1},
        xgb.DMatrix(X, z),
        num_boost_round=300,
    )
    lgb_booster = native_bundles[0].forecaster.base.upper_model.native  # type: ignore[union-attr]
    results: list[tuple[str, int, list[float]]] = []

    def record(name: str, n: int, call: Callable[[], object], repeat: int = 300) -> None:
        results.append((name, n, timings(call, repeat)))

    for n in (1, 1000):
        x, items = X[:n], rows(n)
        miss, hit = DataPlane(bundles, LRUCache(0)), DataPlane(bundles, LRUCache(100_000))
        native = DataPlane(native_bundles, LRUCache(0))
        record("native XGBoost (baseline)", n, lambda x=x: booster.predict(xgb.DMatrix(x)))
        record("native LightGBM", n, lambda x=x: lgb_booster.predict(x, num_threads=1))
        record("slocast data plane, native, miss", n, lambda d=native, i=items: d.predict_llm(i))
        record(
            f"slocast data plane, {bundles[0].engine}, miss",
            n,
            lambda d=miss, i=items: d.predict_llm(i),
        )
        record("slocast data plane, cache hit", n, lambda d=hit, i=items: d.predict_llm(i))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = [
        sys.executable,
        "-m",
        "slocast",
        "serve",
        "http",
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
    ]
    for d in dirs:
        args += ["--bundle", str(d)]
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                httpx.get(f"{url}/readyz")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        with httpx.Client(base_url=url) as client:
            one, post = rows(1)[0], client.post
            record("HTTP /predict", 1, lambda: post("/predict", json=one), 500)
            for n in (1, 100, 1000):
                bulk = {"requests": rows(n)}
                call = lambda b=bulk: post("/predict/bulk/strict", json=b)  # noqa: E731
                record("HTTP /predict/bulk/strict", n, call, 200)
    finally:
        server.terminate()
        server.wait(timeout=10)
    bench_grpc(bundles, record)
    baseline = {n: statistics.median(t) for name, n, t in results if name.startswith("native XGB")}
    title = "slocast serving: latency per call; ratio vs native XGBoost on the same rows"
    table = Table(title=title)
    for column in ("path", "rows", "p50 µs", "p99 µs", "calls/s", "rows/s", "p50 ratio"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for name, n, t in results:
        p50, p99 = statistics.median(t), float(np.percentile(t, 99))
        ref = baseline[1] if n == 1 else baseline[1000] * n / 1000
        cells = [f"{p50 * 1e6:,.0f}", f"{p99 * 1e6:,.0f}", f"{1 / p50:,.0f}", f"{n / p50:,.0f}"]
        table.add_row(name, str(n), *cells, f"{p50 / ref:.2f}x")
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
