"""Benchmark: Optuna trials per minute for each model family, on 2 cores.

Run: `make bench-tune` (or `python bench/bench_tune.py [KIND:PATH] [TRIALS]`). Each family runs
TRIALS trials of the real search (3 time-series folds, no pruning, so every trial does the same
work) on one Nextflow trace. The baseline measured in the same run is one trial's worth of bare
work: fitting the default LightGBM quantile model three times on the same rows without
calibration or replay -- the ratio says what cross-validated, calibrated scoring costs on top.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from slocast.datasets import load_dataset
from slocast.evaluation import time_split
from slocast.models import QuantileForecaster, available_families
from slocast.tuning.cv import cv_folds
from slocast.tuning.study import SearchConfig, run_study

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT = f"nextflow:{SHARED / 'task_memory/sizey_nfcore/trace_chipseq.csv.gz'}"
FAMILIES = ["lightgbm", "xgboost", "ensemble", "bins-lightgbm", "bins-xgboost", "bins-forest",
            "bins-logistic"]  # fmt: skip


def main() -> None:
    arg = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else DEFAULT
    trials = int(sys.argv[2]) if len(sys.argv) > 2 else 6
    data = load_dataset(arg)
    dev = data.frame.iloc[: len(data.frame) - len(time_split(data.frame, data.spec, 0.2, 0.2).test)]
    started = time.perf_counter()
    for prefix in cv_folds(dev, 3):
        QuantileForecaster(data.spec, 0.9).fit(prefix)
    baseline = time.perf_counter() - started
    table = Table(
        title=f"slocast tune: trials per minute on {Path(arg.partition(':')[2]).name} "
        f"({len(dev)} development rows, 3 folds); baseline = 3 bare LightGBM fits "
        f"= {baseline:.2f} s"
    )
    for column in ("family", "trials", "seconds", "trials/min", "s/trial vs baseline"):
        table.add_column(column, justify="left" if column == "family" else "right")
    with tempfile.TemporaryDirectory() as tmp:
        for family in FAMILIES:
            if family not in available_families():
                continue
            config = SearchConfig(
                trials=trials, folds=3, pruner="none", storage=f"sqlite:///{tmp}/bench.db"
            )
            started = time.perf_counter()
            run_study(dev, data.spec, family, config)
            elapsed = time.perf_counter() - started
            table.add_row(
                family,
                str(trials),
                f"{elapsed:.1f}",
                f"{60 * trials / elapsed:.1f}",
                f"{elapsed / trials / baseline:.1f}x",
            )
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
