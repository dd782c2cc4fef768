"""Backtests of many datasets at once, one task each on a Dask cluster (the ``dask`` extra).

A platform team evaluating slocast runs it over every log it has, not one file: ``run_sweep``
starts a local cluster of worker processes (or joins a running scheduler by address), submits
one backtest per dataset, and returns the results in the order asked, whatever order they
finish in. Each task is the same backtest ``slocast evaluate`` runs, so a dataset's numbers do
not depend on whether it ran alone or in a sweep.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from slocast.calibration.forecaster import CalibrationParams
from slocast.datasets import Dataset, load_dataset
from slocast.errors import ConfigError, SlocastError
from slocast.evaluation.backtest import EvaluationResult, run_backtest
from slocast.evaluation.methods import standard_methods
from slocast.models.base import GBMConfig

__all__ = ["SweepJob", "backtest", "backtest_job", "run_sweep"]


@dataclass(frozen=True)
class SweepJob:
    """One dataset's backtest, with everything a worker process needs (it shares no state)."""

    dataset: str  # KIND:PATH
    coverage: float = 0.9
    test_fraction: float = 0.3
    calibration_fraction: float = 0.2
    under_cost_ratio: float = 5.0
    family: str = "lightgbm"
    seed: int = 0
    threads: int = 1
    calibration: CalibrationParams = CalibrationParams()


def backtest(
    job: SweepJob, data: Dataset | None = None, progress: Callable[[str], None] | None = None
) -> EvaluationResult:
    """The standard backtest of one dataset (``slocast evaluate`` runs exactly this)."""
    data = data if data is not None else load_dataset(job.dataset)
    config = GBMConfig(seed=job.seed, threads=job.threads)
    methods = standard_methods(data.spec, job.coverage, job.family, config, job.calibration)
    return run_backtest(
        data,
        methods,
        job.coverage,
        job.test_fraction,
        job.calibration_fraction,
        job.under_cost_ratio,
        progress=progress,
    )


def backtest_job(job: SweepJob) -> dict[str, Any]:
    """Run one job on a worker; ``evaluate --json``'s payload for its dataset."""
    data = load_dataset(job.dataset)
    result = backtest(job, data)
    return {**result.to_json(), "dropped": data.dropped, "argument": job.dataset}


@contextmanager
def _client(scheduler: str | None, workers: int) -> Iterator[Any]:
    from dask.distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler)  # type: ignore[no-untyped-call]
        except ValueError as exc:  # no port, unknown protocol
            raise ConfigError(f"not a Dask scheduler address: {exc}", field="scheduler") from exc
        except OSError as exc:  # refused, or no answer within Dask's connect timeout
            raise SlocastError(
                f"Dask scheduler {scheduler} unreachable: {exc}", field="scheduler"
            ) from exc
        with client:
            yield client
        return
    # One single-threaded process per worker: GBM fits use the threads the job says. The
    # scheduler's HTTP server starts even without a dashboard, on 8787 unless told otherwise:
    # a free port, so sweeps side by side (two CI workers) do not collide over it.
    cluster = LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        scheduler_kwargs={"dashboard": False},
    )
    with cluster, Client(cluster) as client:  # type: ignore[no-untyped-call]
        yield client


def run_sweep(
    jobs: Sequence[SweepJob],
    scheduler: str | None = None,
    workers: int = 2,
    done: Callable[[SweepJob], None] | None = None,
) -> list[dict[str, Any]]:
    """Backtest every job on a Dask cluster; results in the order of ``jobs``.

    ``scheduler``: a running scheduler's address (``tcp://host:8786``); None starts a local
    cluster of ``workers`` processes for the sweep. ``done`` is called as each job finishes.
    """
    from dask.distributed import as_completed

    with _client(scheduler, workers) as client:
        futures = client.map(backtest_job, list(jobs), pure=False)
        index = {future.key: i for i, future in enumerate(futures)}
        results: list[dict[str, Any] | None] = [None] * len(futures)
        for future in as_completed(futures):  # type: ignore[no-untyped-call]
            i = index[future.key]
            results[i] = future.result()  # a task's exception is raised here, naming it
            if done is not None:
                done(jobs[i])
    return [r for r in results if r is not None]
