"""`slocast sweep`: the evaluate backtest over several datasets on a real Dask cluster."""

from __future__ import annotations

import json

import pytest

from slocast.evaluation.sweep import SweepJob, backtest_job, run_sweep
from tests.conftest import LLMD
from tests.test_cli import slocast

pytest.importorskip("distributed", reason="needs the dask extra")

TTFT = f"llmd-ttft:{LLMD / 'chatbot-synthetic-h200.jsonl.gz'}"
TPOT = f"llmd-tpot:{LLMD / 'bimodal-h200.jsonl.gz'}"


def _without_timings(payload: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in payload.items() if k != "seconds"}


def test_a_sweep_gives_each_dataset_its_own_backtest_in_the_order_asked() -> None:
    jobs = [SweepJob(TPOT), SweepJob(TTFT)]
    finished: list[str] = []
    results = run_sweep(jobs, workers=2, done=lambda job: finished.append(job.dataset))
    assert [r["argument"] for r in results] == [TPOT, TTFT]
    assert sorted(finished) == sorted([TPOT, TTFT])
    for job, result in zip(jobs, results, strict=True):
        assert _without_timings(result) == _without_timings(backtest_job(job))  # same numbers
        assert result["methods"]["slocast"]["coverage"] > 0.8


def test_a_failing_dataset_fails_the_sweep_naming_it() -> None:
    with pytest.raises(Exception, match="no-such-file"):
        run_sweep([SweepJob(TTFT), SweepJob("llmd-ttft:no-such-file.jsonl.gz")], workers=1)


def test_two_sweeps_at_once_each_get_their_own_ports() -> None:
    """Two test workers may sweep at the same time: neither may ask for a fixed port (the
    scheduler's HTTP server took 8787, and the second warned, which fails under -W error)."""
    from slocast.evaluation.sweep import _client

    with _client(None, 1) as first, _client(None, 1) as second:
        ports = [c.scheduler_info()["services"]["dashboard"] for c in (first, second)]
    assert 8787 not in ports and ports[0] != ports[1]


def test_a_scheduler_that_cannot_be_reached_is_named() -> None:
    """Both used to end in a Dask traceback (exit 1 with no line saying what to fix)."""
    import dask

    from slocast.errors import ConfigError, SlocastError
    from tests.conftest import free_port

    with (
        dask.config.set({"distributed.comm.timeouts.connect": "1s"}),
        pytest.raises(
            SlocastError, match=r"Dask scheduler tcp://127\.0\.0\.1:\d+ unreachable"
        ) as info,
    ):
        run_sweep([SweepJob(TTFT)], scheduler=f"tcp://127.0.0.1:{free_port()}")
    assert info.value.field == "scheduler"
    with pytest.raises(ConfigError, match="not a Dask scheduler address"):
        run_sweep([SweepJob(TTFT)], scheduler="localhost")


def test_cli_sweep_prints_one_json_object_per_dataset() -> None:
    done = slocast("sweep", "--dataset", TTFT, "--dataset", TPOT, "--workers", "1", "--json")
    assert done.returncode == 0, done.stderr
    payloads = [json.loads(line) for line in done.stdout.splitlines()]
    assert [p["domain"] for p in payloads] == ["llm-ttft", "llm-tpot"]
    bad = slocast("sweep", "--dataset", "nope:file.csv")
    assert bad.returncode == 2 and "nope" in bad.stderr
