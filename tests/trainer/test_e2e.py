"""End to end with real processes: trainer + prediction server learning from the H200 trace."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from slocast.store import SampleStore
from tests.conftest import LLMD, free_port
from tests.store.conftest import postgres_available, postgres_server

pytestmark = pytest.mark.slow


@contextmanager
def process(
    args: list[str], env: dict[str, str], log: Path, ready: str
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "slocast", *args], env={**os.environ, **env},
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            for _ in range(300):
                try:
                    if httpx.get(ready).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.25)
            else:
                raise AssertionError(f"{args[0]} did not start: {log.read_text()}")
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=20)


# A trainer that retrains as soon as a hundred rows are in, every half second, and republishes
# its calibration at most every half second.
FAST_RETRAIN = {"LATENCY_RETRAINING_INTERVAL_SEC": "0.5", "LATENCY_MIN_SAMPLES_FOR_RETRAIN": "100",
                "SLOCAST_RECALIBRATE_INTERVAL_S": "0.5"}  # fmt: skip


@contextmanager
def trainer_and_server(
    home: Path, sync_s: float, trainer_env: dict[str, str] | None = None
) -> Iterator[tuple[str, str]]:
    """A `slocast trainer` and a `slocast serve http` synced to it, logs under ``home``;
    yields their URLs."""
    trainer_port, server_port = free_port(), free_port()
    trainer, server = f"http://127.0.0.1:{trainer_port}", f"http://127.0.0.1:{server_port}"
    env = {"SLOCAST_HOME": str(home / "trainer"), **(trainer_env or {})}
    server_env = {"SLOCAST_HOME": str(home / "server"), "MODEL_SYNC_INTERVAL_SEC": f"{sync_s:g}"}
    with (
        process(["trainer", "--port", str(trainer_port), "--host", "127.0.0.1"], env,
                home / "trainer.log", f"{trainer}/readyz"),
        process(["serve", "http", "--port", str(server_port), "--host", "127.0.0.1",
                 "--training-server-url", trainer], server_env, home / "server.log",
                f"{server}/readyz"),
    ):  # fmt: skip
        yield trainer, server


def trace() -> list[dict[str, Any]]:
    with gzip.open(LLMD / "chatbot-synthetic-h200.jsonl.gz", "rt") as handle:
        return [json.loads(line) for line in handle]


def test_router_loop_learns_and_serves_calibrated_bounds(tmp_path: Path) -> None:
    with (
        trainer_and_server(tmp_path, 0.5, FAST_RETRAIN) as (trainer_url, server_url),
        httpx.Client(timeout=30) as client,
    ):
        rows = trace()
        served: list[tuple[int, float, float, float, float]] = []
        learned = False
        for start in range(0, len(rows), 60):  # the router posts every second
            batch = rows[start : start + 60]
            features = [{k: v for k, v in r.items() if not k.startswith("actual_")} for r in batch]
            predicted = client.post(
                f"{server_url}/predict/bulk/strict", json={"requests": features}
            )
            assert predicted.status_code == 200
            if learned:
                for row, p in zip(batch, predicted.json()["predictions"], strict=True):
                    served.append(
                        (start, row["actual_ttft_ms"], p["ttft_ms"], row["actual_tpot_ms"],
                         p["tpot_ms"])
                    )  # fmt: skip
            posted = client.post(f"{trainer_url}/add_training_data_bulk", json={"entries": batch})
            assert posted.status_code == 202
            if not learned and start >= 600:
                time.sleep(1.5)
                reload = client.post(f"{server_url}/reload").json()
                status = client.get(f"{server_url}/status").json()
                learned = (
                    status["models_exist"]["ttft_model"] and status["models_exist"]["tpot_model"]
                )
                assert reload["is_ready"]
            time.sleep(1.0)
        assert learned, (tmp_path / "trainer.log").read_text()[-2000:]
        data = np.array(served)
        ttft = clustered_coverage(data[:, 1], data[:, 2], data[:, 0])
        tpot = clustered_coverage(data[:, 3], data[:, 4], data[:, 0])
        gating = client.get(f"{trainer_url}/v1/bundles/gating").json()["decisions"]
    assert sum(d["accepted"] for d in gating) >= 2
    # This trace ramps its load stage by stage (TTFT from ~2 s to ~200 s as the queue grows
    # from 1 to 180), so each stage is heavier than anything the served model was trained on.
    # TTFT is learned relative to the queue (DomainSpec.scale_with), which keeps its bound up
    # with the ramp. A batch's rows share one server state, so they miss or hit together: TPOT's
    # bound sits only 3-5 % above its median, and a 1-2 ms shift between batches flips most
    # of a batch. The ~40 batches served are then the sample, not the ~1,200 rows: the
    # coverage's own standard error is about 3 points (three times the per-row one), and a
    # server calibrated exactly to 0.90 lands anywhere in 0.84-0.96 in one run. So "within a
    # few points of the quantile" is asserted as: within 3 points, give or take two of those
    # standard errors. Runs here since a retrained model follows the outcomes that came during
    # its fit: TTFT 0.875-0.907, TPOT 0.863-0.893 (standard errors 2.5-3 points). Uncalibrated
    # trees cover 0.21 of this trace's TPOT (the backtest's quantile_raw). One run cannot tell
    # a server that is calibrated from one that is a few points off: an in-process replay one
    # sync behind covered TPOT 0.82, inside these bounds.
    for name, (coverage, error) in (("TTFT", ttft), ("TPOT", tpot)):
        print(f"served {name} coverage {coverage:.3f} (standard error {error:.3f})")
        assert abs(coverage - 0.90) <= 0.03 + 2 * error, (name, coverage, error)


def clustered_coverage(
    outcome: np.ndarray, bound: np.ndarray, batch: np.ndarray
) -> tuple[float, float]:
    """Share of rows with an outcome (> 0: the row's target) that their bound covered, and
    its standard error counting each batch as one draw (the cluster-robust sandwich of a ratio
    estimator): rows served together miss together."""
    rows = outcome > 0
    hit, batch = (outcome[rows] <= bound[rows]).astype(np.float64), batch[rows]
    coverage = float(hit.mean())
    _, cluster = np.unique(batch, return_inverse=True)
    residual = np.bincount(cluster, weights=hit - coverage)
    return coverage, float(np.sqrt(np.sum(residual**2)) / len(hit))


@contextmanager
def sample_store(kind: str) -> Iterator[dict[str, str]]:
    """The environment that points a trainer at an embedded SQLite file (under its home) or at
    a real PostgreSQL server started for the test."""
    if kind == "sqlite":
        yield {}
        return
    if not postgres_available():
        pytest.skip("PostgreSQL binaries not installed (apt-get install postgresql; .ci/run does)")
    with postgres_server() as server:
        yield {"SLOCAST_STORE_URL": server.url}


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_accepted_rows_survive_kill_9(tmp_path: Path, store: str) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"SLOCAST_HOME": str(tmp_path / "home"), "LATENCY_MIN_SAMPLES_FOR_RETRAIN": "100000"}
    args = ["trainer", "--port", str(port), "--host", "127.0.0.1"]
    rows = trace()[:700]
    with sample_store(store) as store_env:
        env |= store_env
        with process(args, env, tmp_path / "a.log", f"{url}/readyz") as proc:
            for start in range(0, len(rows), 100):
                response = httpx.post(
                    f"{url}/add_training_data_bulk", json={"entries": rows[start : start + 100]}
                )
                assert response.status_code == 202
            proc.send_signal(signal.SIGKILL)  # right after the last 202
            proc.wait(timeout=10)
        with process(args, env, tmp_path / "b.log", f"{url}/readyz"):
            status = httpx.get(f"{url}/data/status").json()
        if store == "postgresql":  # the rows are in that server, not in a file under home
            stored = SampleStore(env["SLOCAST_STORE_URL"])
            counts = [stored.counts(d) for d in ("llm-ttft", "llm-tpot")]
            stored.close()
            assert sum(c.train + c.test for c in counts) == len(rows)
    total = status["training_data"]["total_samples"] + status["test_data"]["total_samples"]
    assert total == len(rows)


def test_prediction_servers_serve_a_published_bundle_before_their_next_poll(
    tmp_path: Path,
) -> None:
    """HTTP and gRPC servers watch the trainer's listing: a bundle published a minute before
    their next poll is served within seconds."""
    import grpc

    from slocast.serving.pb import slocast_pb2 as pb
    from slocast.serving.pb import slocast_pb2_grpc as pb_grpc

    grpc_port, metrics_port = free_port(), free_port()
    grpc_env = {"SLOCAST_HOME": str(tmp_path / "grpc"), "MODEL_SYNC_INTERVAL_SEC": "60"}
    with (
        trainer_and_server(tmp_path, 60, FAST_RETRAIN) as (trainer_url, server_url),
        process(["serve", "grpc", "--port", str(grpc_port), "--host", "127.0.0.1",
                 "--metrics-port", str(metrics_port), "--training-server-url", trainer_url],
                grpc_env, tmp_path / "grpc.log", f"http://127.0.0.1:{metrics_port}/metrics"),
        httpx.Client(timeout=30) as client,
        grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel,
    ):  # fmt: skip
        grpc.channel_ready_future(channel).result(timeout=30)
        stub = pb_grpc.PredictorStub(channel)

        def cold() -> tuple[bool, bool]:
            models = client.get(f"{server_url}/v1/models").json()["models"]
            over_http = next(m["cold_start"] for m in models if m["domain"] == "llm-ttft")
            [model] = stub.GetModelInfo(pb.ModelInfoRequest(domain="llm-ttft")).models
            return over_http, model.cold_start

        time.sleep(1.0)  # the servers' first rounds have found nothing to serve
        assert cold() == (True, True)
        rows = trace()[:600]
        assert client.post(
            f"{trainer_url}/add_training_data_bulk", json={"entries": rows}
        ).is_success
        started = time.monotonic()
        while any(cold()) and time.monotonic() - started < 30:
            time.sleep(0.05)
        logs = [(tmp_path / f).read_text()[-1000:] for f in ("server.log", "grpc.log")]
        assert cold() == (False, False), logs
