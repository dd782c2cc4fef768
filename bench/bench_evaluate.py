"""Benchmark: `slocast evaluate` end to end on the largest real traces, vs its parts.

Run: `make bench` (or `python bench/bench_evaluate.py [KIND:PATH ...]`). Prints a table of wall
times with ratios against the baseline measured in the same run: loading the trace and fitting
the raw quantile model once (what any quantile-GBM tool must pay). The issue's budget for the
54k-job SDSC-SP2 log is 60 s on 2 cores.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from slocast.datasets import load_dataset
from slocast.evaluation import run_backtest, standard_methods, time_split
from slocast.models import QuantileForecaster

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT = [
    f"swf:{SHARED / 'hpc_swf/SDSC-SP2-1998-4.2-cln.swf.gz'}",
    f"alibaba-lora:{SHARED / 'model_serving/alibaba_genai_gentd26/lora_request_trace.csv.gz'}",
]


def bench(arg: str) -> tuple[float, float, float, int]:
    started = time.perf_counter()
    data = load_dataset(arg)
    split = time_split(data.frame, data.spec, 0.2, 0.2)
    QuantileForecaster(data.spec, 0.9).fit(split.train)
    baseline = time.perf_counter() - started
    started = time.perf_counter()
    data = load_dataset(arg)
    load = time.perf_counter() - started
    started = time.perf_counter()
    run_backtest(data, standard_methods(data.spec, 0.9), 0.9, 0.2, 0.2)
    return baseline, load, load + time.perf_counter() - started, data.rows


def main() -> None:
    table = Table(title="slocast evaluate: wall time (s), ratio vs load + one raw quantile fit")
    for column in ("dataset", "rows", "baseline s", "load s", "evaluate s", "ratio"):
        table.add_column(column, justify="right" if column != "dataset" else "left")
    for arg in sys.argv[1:] or DEFAULT:
        if not Path(arg.partition(":")[2]).is_file():
            Console(stderr=True).print(f"skip {arg}: file not found")
            continue
        baseline, load, total, rows = bench(arg)
        name = Path(arg.partition(":")[2]).name
        ratio = f"{total / baseline:.1f}x"
        table.add_row(name, str(rows), f"{baseline:.2f}", f"{load:.2f}", f"{total:.2f}", ratio)
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
