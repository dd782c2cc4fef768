"""Benchmark: serving latency, in process and over HTTP, vs native XGBoost in the same run.

Run: `make bench-serve`. Trains TTFT/TPOT bundles on the bundled llm-d H200 trace, then prints
p50/p99 per call and throughput for:
  - native XGBoost / LightGBM one-row and 1,000-row predict (the baseline: a bare model call),
  - for reference, llm-d's own in-process work per request: its TTFT and its TPOT XGBoost
    models, both (slocast's llm-d routes compute both bounds too; the ratio stays one model's),
  - the TTFT bound's trees alone, compiled by each engine this machine has (lleaves, TL2cgen),
  - slocast's data plane (features + model + conformal offsets + cache), cache miss and hit,
  - a real `slocast serve http` process: /predict (one row the cache holds, and rows it has
    never seen) and /predict/bulk/strict (1, 100, 1,000 rows), through a lean keep-alive
    client (prebuilt request bytes on one socket: what is timed is the server and the
    loopback, not a Python client library) and, for reference, through httpx;
    then /predict paced at 1,000 req/s (open loop, every row new) for the p99 under load,
    and, where `wrk` is installed (`apt-get install wrk`), /predict driven by wrk, a load
    generator in C on one thread, over 1, 4 and 16 keep-alive connections, every row new: the
    server's throughput when the client does not take the second core from it,
  - a real `slocast serve grpc` process, and a no-work gRPC servicer for grpcio's own cost.
The ratio column divides by native XGBoost's in-process call for the same number of rows.
Every library predicts on all the machine's cores for a batch (XGBoost's and LightGBM's default,
and slocast's `predict_threads = 0`), so the comparison is like for like.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import multiprocessing
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import xgboost as xgb
from rich.console import Console
from rich.table import Table

from slocast.artifacts import ModelBundle, load_bundle, save_bundle
from slocast.artifacts.compiled import (
    LIBRARY_SUFFIX,
    compile_model,
    engine_available,
    load_compiled,
)
from slocast.calibration.forecaster import CalibrationParams, fit_on_history
from slocast.datasets import load_dataset
from slocast.models import QuantileForecaster
from slocast.serving import DataPlane, LRUCache
from slocast.serving.schemas import LatencyRows

TRACE = (
    Path(__file__).resolve().parents[1]
    / "data/llm_serving/llmd_h200_traces/chatbot-synthetic-h200.jsonl.gz"
)


def xgboost_like(bundle: ModelBundle, threads: int) -> tuple[xgb.Booster, np.ndarray]:
    """An XGBoost model (300 rounds, depth 6: llm-d's kind) fitted to ``bundle``'s upper
    quantile on the bench rows, and those rows as features."""
    pipeline = bundle.forecaster.base.pipeline
    assert pipeline is not None
    X = pipeline.transform_records(rows(1000))
    z = bundle.forecaster.base.upper_model.predict(X)  # type: ignore[union-attr]
    booster = xgb.train(
        {"objective": "reg:quantileerror", "quantile_alpha": 0.9, "max_depth": 6},
        xgb.DMatrix(X, z),
        num_boost_round=300,
    )
    booster.set_param({"nthread": threads})
    return booster, X


def timings(call: Callable[[], object], repeat: int) -> list[float]:
    for _ in range(min(20, repeat)):
        call()
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        out.append(time.perf_counter() - started)
    return out


def interleaved(
    calls: Sequence[Callable[[], object]], rounds: int = 40, block: int = 20
) -> list[list[float]]:
    """Timings of each call, measured in alternating blocks: a drift in the machine's speed
    over the run (this VM's p50s move by 20 % from one minute to the next) hits every call
    alike, so their ratio holds still."""
    out: list[list[float]] = [[] for _ in calls]
    for _ in range(rounds):
        for call, times in zip(calls, out, strict=True):
            times += timings(call, block)
    return out


class KeepAliveClient:
    """HTTP/1.1 POSTs on one persistent socket; checks every answer is a 200."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def request(self, path: str, body: bytes) -> bytes:
        head = f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body

    def send(self, request: bytes) -> bytes:
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(1 << 20)
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.decode(errors="replace"))
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        while len(rest) < length:
            rest += self.sock.recv(1 << 20)
        self.buffer = rest[length:]
        return rest[:length]

    def close(self) -> None:
        self.sock.close()


def paced(call: Callable[[], object], rate: float, seconds: float) -> list[float]:
    """Latencies of ``call`` issued on a fixed schedule (open loop: a slow answer delays the
    next send, and that wait counts in the next latency)."""
    interval, out = 1.0 / rate, []
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        due = start + i * interval
        while time.perf_counter() < due:
            pass
        call()
        out.append(time.perf_counter() - due)
    return out


# Each wrk connection sends the next line of BODIES; the file is read once per wrk thread.
WRK_SCRIPT = """
local bodies, next_body = {}, 0
for line in io.lines(os.getenv("BODIES")) do bodies[#bodies + 1] = line end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  next_body = next_body % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[next_body])
end
"""
_WRK_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
WRK_BODIES = 100_000  # more than a 5 s run sends, so no row repeats


def wrk_load(url: str, bodies: Path, connections: int, seconds: int) -> dict[str, float] | None:
    """Requests/s and latency p50 / p99 (s) of `wrk` POSTing ``bodies`` (one JSON per line, each
    sent once while the run lasts) to ``url`` over ``connections`` keep-alive connections from
    one thread; None without wrk."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    script = bodies.with_suffix(".lua")
    script.write_text(WRK_SCRIPT)
    command = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "BODIES": str(bodies)}
    )
    out = done.stdout
    if done.returncode != 0 or "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk failed or saw errors:\n{out}{done.stderr}")
    sent = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    if sent > WRK_BODIES:
        raise RuntimeError(
            f"wrk sent {sent} requests, more than the {WRK_BODIES} rows: some repeat"
        )
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = {
        p: float(v) * _WRK_UNITS[unit]
        for p, v, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)$", out, re.MULTILINE)
    }
    return {"rate": rate, "p50": latency["50"], "p99": latency["99"]}


def unseen_rows(n: int, shift: float = 0.0) -> list[dict[str, float]]:
    """``n`` rows no two alike (the KV-cache use spread over its range), so none is a cache hit;
    a ``shift`` in (0, 1) gives KV-cache values that no other shift's rows have."""
    return [{**row, "kv_cache_percentage": (i + shift) / n} for i, row in enumerate(rows(n))]


def rows(n: int) -> list[dict[str, float]]:
    with gzip.open(TRACE, "rt") as handle:
        base = [json.loads(line) for line in handle]
    for row in base:
        row.pop("actual_ttft_ms"), row.pop("actual_tpot_ms")
    return [base[i % len(base)] for i in range(n)]


class _Floor:
    """A servicer that answers every call with a prebuilt response: what grpcio itself costs."""

    def __init__(self, one: Any, batch: Any) -> None:
        self.one, self.batch = one, batch

    def Predict(self, request: Any, context: Any) -> Any:
        return self.one

    def PredictBatch(self, request: Any, context: Any) -> Any:
        return self.batch

    def PredictStream(self, requests: Iterator[Any], context: Any) -> Iterator[Any]:
        for _ in requests:
            yield self.one

    def GetModelInfo(self, request: Any, context: Any) -> Any:
        raise NotImplementedError


def serve_floor(port: int, one: bytes, batch: bytes) -> None:
    """Run a :class:`_Floor` server on ``port`` until killed (in its own process, as the real
    server runs, so neither competes with the client for one interpreter lock)."""
    import grpc

    from slocast.serving.pb import slocast_pb2 as pb
    from slocast.serving.pb import slocast_pb2_grpc as pb_grpc

    floor = _Floor(pb.PredictResponse.FromString(one), pb.PredictBatchResponse.FromString(batch))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb_grpc.add_PredictorServicer_to_server(floor, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def bench_grpc(dirs: list[Path], record: Callable[..., None]) -> None:
    """Predict, PredictBatch (1,000 jobs as items and as columns) and PredictStream (200 messages
    per stream) against a real `slocast serve grpc` process, then the same calls against a
    server process whose servicer does no work."""
    import grpc

    from slocast.serving.pb import slocast_pb2 as pb
    from slocast.serving.pb import slocast_pb2_grpc as pb_grpc

    def as_items(jobs: list[dict[str, float]]) -> list[Any]:
        return [
            pb.Item(numeric={k: float(v) for k, v in r.items() if isinstance(v, int | float)})
            for r in jobs
        ]

    jobs = rows(1000)
    items = as_items(jobs)
    columns = pb.Columns()
    for name in jobs[0]:
        columns.numeric[name].values.extend(float(r[name]) for r in jobs)
    batch = pb.PredictBatchRequest(domain="llm-ttft", items=items)
    as_columns = pb.PredictBatchRequest(domain="llm-ttft", columns=columns)
    one = pb.PredictRequest(domain="llm-ttft", item=items[0])
    stream = [pb.PredictRequest(domain="llm-ttft", item=i) for i in items[:200]]

    def calls(stub: Any, label: str) -> None:
        record(f"gRPC PredictBatch{label}", 1000, lambda: stub.PredictBatch(batch), 100)
        if not label:
            columns_call = lambda: stub.PredictBatch(as_columns)  # noqa: E731
            record("gRPC PredictBatch (columns)", 1000, columns_call, 100)
        record(f"gRPC Predict{label or ', cache hit'}", 1, lambda: stub.Predict(one), 500)
        if not label:
            fresh = iter(
                pb.PredictRequest(domain="llm-ttft", item=item)
                for item in as_items(unseen_rows(600))
            )
            miss = lambda: stub.Predict(next(fresh))  # noqa: E731
            record("gRPC Predict, cache miss", 1, miss, 500)
        stream_call = lambda: list(stub.PredictStream(iter(stream)))  # noqa: E731
        record(f"gRPC PredictStream (200 msgs){label}", 200, stream_call, 30)

    def against(port: int, label: str) -> tuple[Any, Any]:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=60)
            stub = pb_grpc.PredictorStub(channel)
            calls(stub, label)
            return stub.Predict(one), stub.PredictBatch(batch)

    port = free_port()
    with slocast_server(["grpc", "--port", str(port), "--host", "127.0.0.1"], dirs):
        answers = against(port, "")
    port = free_port()
    floor_args = (port, *(answer.SerializeToString() for answer in answers))
    floor = multiprocessing.get_context("spawn").Process(target=serve_floor, args=floor_args)
    floor.start()
    try:
        against(port, " (grpcio floor, no work)")
    finally:
        floor.terminate()
        floor.join()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def slocast_server(args: list[str], dirs: list[Path]) -> Iterator[None]:
    """A `slocast serve ...` process serving ``dirs``, for the duration of the block."""
    command = [sys.executable, "-m", "slocast", "serve", *args]
    for d in dirs:
        command += ["--bundle", str(d)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        server.terminate()
        server.wait(timeout=10)


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
    threads = os.cpu_count() or 1
    (booster, X), (tpot_booster, tpot_X) = (xgboost_like(b, threads) for b in bundles)
    lgb_booster = native_bundles[0].forecaster.base.upper_model.native  # type: ignore[union-attr]
    results: list[tuple[str, int, list[float]]] = []
    # Per batch size: one XGBoost model's call, and llm-d's (its TTFT and TPOT models both).
    references: dict[int, tuple[Callable[[], object], Callable[[], object]]] = {}
    # Per batch size: slocast's HTTP round trip against those, measured interleaved.
    duel: dict[int, list[list[float]]] = {}
    # Per connection count: wrk's rate and latency against /predict (None without wrk).
    load: dict[int, dict[str, float] | None] = {}

    def record(name: str, n: int, call: Callable[[], object], repeat: int = 300) -> None:
        results.append((name, n, timings(call, repeat)))

    engines = {}  # the TTFT upper model's trees alone, compiled by each engine this machine has
    for engine in ("lleaves", "tl2cgen"):
        out = work / f"ttft_upper.{engine}{LIBRARY_SUFFIX[engine]}"
        if engine_available(engine) and compile_model(
            dirs[0] / "model_upper.txt", "lightgbm", out, engine
        ):
            engines[engine] = load_compiled(out, engine, dirs[0] / "model_upper.txt")
    for n in (1, 1000):
        x, items = X[:n], rows(n)
        for engine, model in engines.items():
            record(f"trees only, {engine}", n, lambda m=model, x=x: m.predict(x))
        miss = DataPlane(bundles, LRUCache(0))
        # Every row looked up, whatever the batch (servers skip the cache above 64 rows).
        hit = DataPlane(bundles, LRUCache(100_000), cache_max_batch=n)
        native = DataPlane(native_bundles, LRUCache(0))
        xgb_call = lambda x=x: booster.predict(xgb.DMatrix(x))  # noqa: E731
        record("native XGBoost (baseline)", n, xgb_call)
        # llm-d's /predict routes run both its models in process: for reference, not the ratio.
        both = lambda x=x, y=tpot_X[:n]: (  # noqa: E731
            booster.predict(xgb.DMatrix(x)),
            tpot_booster.predict(xgb.DMatrix(y)),
        )
        record("llm-d's call in process: XGBoost TTFT + TPOT", n, both)
        references[n] = (xgb_call, both)
        record("native LightGBM", n, lambda x=x: lgb_booster.predict(x, num_threads=threads))
        # Rows as the HTTP routes hand them over: decoded from the body, one attribute per field.
        decoded = LatencyRows().bulk(json.dumps({"requests": items}).encode())
        for name, plane in (
            ("slocast data plane, native, miss", native),
            (f"slocast data plane, {bundles[0].engine}, miss", miss),
            ("slocast data plane, cache hit", hit),
        ):
            record(name, n, lambda d=plane, r=decoded: d.predict_llm_rows(r))
        if n == 1:  # the in-process figure: one model's calibrated bound, one row
            one_model = lambda i=items: ttft.predict_matrix(i, upper_only=True)  # noqa: E731
            record(f"{ttft.engine} bundle: one domain's bound", n, one_model, 3000)
    port = free_port()
    with slocast_server(["http", "--port", str(port), "--host", "127.0.0.1"], dirs):
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                httpx.get(f"{url}/readyz")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        lean = KeepAliveClient(port)
        one = lean.request("/predict", json.dumps(rows(1)[0]).encode())
        record("HTTP /predict, cache hit", 1, lambda: lean.send(one), 3000)
        # Every call below a request the server has not seen: what a router's traffic costs.
        fresh = iter(
            [lean.request("/predict", json.dumps(row).encode()) for row in unseen_rows(10_000)]
        )
        record("HTTP /predict, cache miss", 1, lambda: lean.send(next(fresh)), 3000)
        bulk = {
            n: lean.request("/predict/bulk/strict", json.dumps({"requests": rows(n)}).encode())
            for n in (1, 100, 1000)
        }
        for n, request in bulk.items():
            record("HTTP /predict/bulk/strict", n, lambda b=request: lean.send(b), 300)
        duel[1] = interleaved([lambda: lean.send(next(fresh)), *references[1]])
        duel[1000] = interleaved([lambda: lean.send(bulk[1000]), *references[1000]])
        at_rate = paced(lambda: lean.send(next(fresh)), 1000, 5)
        results.append(("HTTP /predict at 1,000 req/s, cache miss", 1, at_rate))
        lean.close()
        with httpx.Client(base_url=url) as client:
            body = rows(1)[0]
            record("HTTP /predict (httpx client)", 1, lambda: client.post("/predict", json=body))
        # Rows no call has sent: each run its own KV-cache values, between the ones above.
        for run, connections in enumerate((1, 4, 16)):
            bodies = work / f"wrk_{connections}.jsonl"
            fresh_rows = unseen_rows(WRK_BODIES, shift=(run + 1) / 4)
            bodies.write_text("".join(json.dumps(r) + "\n" for r in fresh_rows))
            load[connections] = wrk_load(f"{url}/predict", bodies, connections, 5)
    bench_grpc(dirs, record)
    baseline = {n: statistics.median(t) for name, n, t in results if name.startswith("native XGB")}
    title = (
        "slocast serving: latency per call; ratio vs native XGBoost on the same rows "
        f"({threads} threads per batch)"
    )
    table = Table(title=title)
    for column in ("path", "rows", "p50 µs", "p99 µs", "calls/s", "rows/s", "p50 ratio"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for name, n, t in results:
        p50, p99 = statistics.median(t), float(np.percentile(t, 99))
        ref = baseline[1] if n == 1 else baseline[1000] * n / 1000
        cells = [f"{p50 * 1e6:,.0f}", f"{p99 * 1e6:,.0f}", f"{1 / p50:,.0f}", f"{n / p50:,.0f}"]
        table.add_row(name, str(n), *cells, f"{p50 / ref:.2f}x")
    console = Console(width=150)
    console.print(table)
    console.print(head_to_head(duel))
    console.print(load_table(load, baseline[1]))


def load_table(load: dict[int, dict[str, float] | None], xgboost_one_row_s: float) -> Table | str:
    """The issue's throughput bar, from a load generator that leaves the server its core, and
    the rate against one-row native XGBoost calls in process, back to back (this run's p50)."""
    if any(result is None for result in load.values()):
        return "wrk is not installed (apt-get install wrk): no load-generator rows"
    table = Table(title="HTTP /predict from wrk (one thread, keep-alive), every row new")
    columns = ("connections", "req/s", "vs XGBoost calls/s", "p50 µs", "p99 µs", "issue target")
    for column in columns:
        table.add_column(column, justify="right")
    for connections, result in load.items():
        assert result is not None
        table.add_row(
            str(connections),
            f"{result['rate']:,.0f}",
            f"{result['rate'] * xgboost_one_row_s:.2f}x",
            f"{result['p50'] * 1e6:,.0f}",
            f"{result['p99'] * 1e6:,.0f}",
            "≥ 3,000 req/s",
        )
    return table


def head_to_head(duel: dict[int, list[list[float]]]) -> Table:
    """The issue's bar: slocast's whole HTTP round trip against a bare in-process model call."""
    table = Table(
        title="slocast's HTTP round trip vs a model called in process, interleaved (p50 µs)"
    )
    columns = (
        "rows",
        "slocast HTTP",
        "one XGBoost model",
        "ratio",
        "llm-d's call (TTFT + TPOT)",
        "ratio",
        "issue target",
    )
    for column in columns:
        table.add_column(column, justify="right")
    targets = {1: "≤ 1.5x", 1000: "≤ 1.0x"}
    for n, times in duel.items():
        ours, one_model, llmd = (statistics.median(t) for t in times)
        table.add_row(
            str(n),
            f"{ours * 1e6:,.0f}",
            f"{one_model * 1e6:,.0f}",
            f"{ours / one_model:.2f}x",
            f"{llmd * 1e6:,.0f}",
            f"{ours / llmd:.2f}x",
            targets[n],
        )
    return table


if __name__ == "__main__":
    main()
