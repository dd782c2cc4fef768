"""The coverage promise on the real traces, measured exactly as `slocast evaluate` does.

Tolerance (issue 3): within 1.5 points of the promise where the test slice has >= 5,000 rows,
within 3 points for smaller slices.
"""

from __future__ import annotations

import gzip
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from slocast.calibration.forecaster import CalibrationParams, build_slocast
from slocast.datasets import Dataset, load_dataset
from slocast.evaluation import EvaluationResult, run_backtest, standard_methods
from slocast.evaluation.backtest import MethodResult
from slocast.features import history_base_column
from slocast.models.quantile import QuantileForecaster
from slocast.schema import DomainSpec
from tests.conftest import ALIBABA, LLMD, SIZEY, SWF, shared_file

pytestmark = pytest.mark.slow


def _evaluate(arg: str) -> EvaluationResult:
    data = load_dataset(arg)
    return run_backtest(data, standard_methods(data.spec, 0.9), 0.9, 0.2, 0.2)


def _side_by_side(
    data: Dataset, specs: dict[str, DomainSpec], coverage: float
) -> dict[str, MethodResult]:
    """slocast with its default parameters on each spec, replayed side by side."""
    methods = []
    for name, spec in specs.items():
        method = build_slocast(QuantileForecaster(spec, coverage), CalibrationParams())
        method.name = name
        methods.append(method)
    return run_backtest(data, methods, coverage, 0.2, 0.2).methods


def _tolerance(result: EvaluationResult) -> float:
    return 0.015 if len(result.split.test) >= 5000 else 0.03


@pytest.mark.parametrize(
    ("kind", "trace"),
    [
        ("llmd-ttft", "bimodal-h200"),
        ("llmd-ttft", "chatbot-synthetic-h200"),
        ("llmd-tpot", "bimodal-h200"),
        ("llmd-tpot", "chatbot-synthetic-h200"),
    ],
)
def test_llmd_coverage(kind: str, trace: str) -> None:
    result = _evaluate(f"{kind}:{LLMD / (trace + '.jsonl.gz')}")
    if kind == "llmd-ttft":
        # These traces ramp the queue far past the training window. Learned relative to the
        # queue (scale_with), the uncalibrated model still covers about half the later rows;
        # trees on the absolute TTFT covered under 1 %.
        assert result.methods["quantile_raw"].metrics.coverage > 0.4
    assert result.methods["slocast"].metrics.coverage == pytest.approx(0.9, abs=_tolerance(result))


def test_swf_coverage_and_business_score() -> None:
    result = _evaluate(f"swf:{shared_file(SWF)}")
    slocast = result.methods["slocast"].metrics
    assert slocast.coverage == pytest.approx(0.9, abs=_tolerance(result))
    # SDSC-SP2's scheduler ends jobs a little after their requested time (7.7 % of jobs ran
    # past it, half of them by under 40 s): bounds capped at the request plus that grace
    # score 0.70x the request, 0.81x uncapped, at the same coverage.
    assert slocast.business_score < 0.75 * result.methods["user_request"].metrics.business_score
    # The raw quantile model under-covers on the future slice; calibration is what fixes it.
    assert result.methods["quantile_raw"].metrics.coverage < 0.87


def test_level_cells_on_a_swf_log_without_requests(tmp_path: Path) -> None:
    """Without a request to cap it, one offset per user lands a bimodal user's misses on jobs
    the model already predicts long (SDSC-SP2's first 6,000 jobs: user 259 runs 25 s tests and
    7,000 s jobs). Splitting each user's scores by the model's predicted level keeps them on
    the jobs predicted short."""
    with gzip.open(shared_file(SWF), "rt") as source:
        jobs = [line.split() for line in source if not line.startswith(";")][:6000]
    log = tmp_path / "no-request.swf"
    log.write_text("".join(" ".join([*f[:8], "-1", *f[9:]]) + "\n" for f in jobs))
    data = load_dataset(f"swf:{log}")
    base = QuantileForecaster(data.spec, 0.9)
    # The model's own bounds (the history expert serves many of these users' jobs otherwise).
    methods = {
        bins: build_slocast(base, CalibrationParams(level_bins=bins, history_expert=False))
        for bins in (1, 3)
    }
    for bins, method in methods.items():
        method.name, method.fit_base = f"bins={bins}", bins == 1
    result = run_backtest(data, list(methods.values()), 0.9, 0.2, 0.2)
    groups_only, cells = result.methods["bins=1"].metrics, result.methods["bins=3"].metrics
    assert cells.coverage == pytest.approx(0.9, abs=_tolerance(result))
    assert cells.over_alloc_pct < 0.5 * groups_only.over_alloc_pct
    assert cells.business_score < 0.5 * groups_only.business_score


def test_a_burst_of_one_users_misses_does_not_widen_every_users_bounds(tmp_path: Path) -> None:
    """SDSC-SP2's first third (19,905 jobs) as a log of its own. Jobs of one user end together
    and miss together; counted per job in ACI's rounds, such bursts lifted the level for every
    user (5 % of rounds at 0.98 or above), and on the log scale that multiplied the bounds:
    0.90x the request's score, 1.76x with today's history expert. Counted per user, 0.75x
    (coverage 0.893); 0.57x since bounds stop at the request plus its grace."""
    with gzip.open(shared_file(SWF), "rt") as source:
        lines = [line for line in source if line.strip() and not line.startswith(";")]
    log = tmp_path / "first-third.swf"
    log.write_text("".join(lines[: len(lines) // 3]))
    result = _evaluate(f"swf:{log}")
    slocast = result.methods["slocast"].metrics
    assert slocast.coverage == pytest.approx(0.9, abs=_tolerance(result))
    assert slocast.business_score < 0.85 * result.methods["user_request"].metrics.business_score


def _default_fields(tmp_path: Path, workflow: str) -> Path:
    """A Sizey trace as Nextflow's default trace fields write it: no process column (the task
    name carries it), no memory request."""
    import csv

    fields = ["task_id", "name", "status", "submit", "duration", "peak_rss", "rchar", "wchar"]
    with gzip.open(shared_file(SIZEY.format(workflow)), "rt") as source:
        rows = [[row[f] for f in fields] for row in csv.DictReader(source)]
    trace = tmp_path / f"{workflow}.txt"
    trace.write_text("\n".join("\t".join(r) for r in [fields, *rows]) + "\n")
    return trace


def test_a_nextflow_trace_without_requests_keeps_bounds_in_scale(tmp_path: Path) -> None:
    """rnaseq as Nextflow's default trace fields write it: no process column (the task name
    carries it), no memory request, so tasks of processes never seen get the model's bound and
    miss. ACI's widening beyond its level clamp (on by default before) turned those misses into
    additive offsets on the log scale: every bound multiplied, for under a point of coverage."""
    data = load_dataset(f"nextflow:{_default_fields(tmp_path, 'rnaseq')}")
    assert data.spec.user_request is None and data.spec.group == "process"
    scores = {}
    for gain in (0.0, 20.0):
        # The model's bounds alone: the history expert (below) lowers coverage here.
        params = CalibrationParams(overflow_gain=gain, history_expert=False)
        result = run_backtest(data, standard_methods(data.spec, 0.9, params=params), 0.9, 0.2, 0.2)
        scores[gain] = result.methods["slocast"].metrics
    assert CalibrationParams().overflow_gain == 0.0
    assert scores[0.0].coverage == pytest.approx(0.9, abs=_tolerance(result))
    assert scores[20.0].coverage - scores[0.0].coverage < 0.01
    assert scores[0.0].business_score < 0.01 * scores[20.0].business_score


def test_alibaba_coverage() -> None:
    result = _evaluate(f"alibaba-lora:{shared_file(ALIBABA)}")
    assert len(result.split.test) >= 5000
    assert result.methods["slocast"].metrics.coverage == pytest.approx(0.9, abs=0.015)


@pytest.mark.parametrize(
    "workflow",
    [
        "iwd",
        pytest.param(
            "eager",
            marks=pytest.mark.xfail(
                strict=True,
                reason="0.933: the ten retried tasks served their request all cover, one task "
                "past the 3 points a 315-task slice allows (test_retried_tasks_get_their_request)",
            ),
        ),
        "rnaseq",
        "chipseq",
    ],
)
def test_sizey_coverage(workflow: str) -> None:
    result = _evaluate(f"nextflow:{shared_file(SIZEY.format(workflow))}")
    slocast = result.methods["slocast"].metrics
    assert slocast.coverage == pytest.approx(0.9, abs=_tolerance(result))
    if workflow == "rnaseq":
        # 27 % of its test tasks belong to processes with no finished task when they were
        # submitted, and their requests hold most of the request's waste: a method that gives
        # them their request scores no lower than this oracle, exact on every other task
        # (about 0.37x the request's score). Served the largest share of its request any
        # process seen needed (or its module under another subworkflow), slocast scores below
        # it (measured 182.7 against 196.8; 271.2 with whole requests).
        floor = result.references["request_until_known"]
        request = result.methods["user_request"].metrics.business_score
        assert floor.coverage == 1.0 and 0.3 < floor.business_score / request < 0.45
        assert slocast.business_score < 0.95 * floor.business_score


def test_retried_tasks_get_their_request() -> None:
    """eager's ten markduplicates tasks recorded on a later attempt (their first ran out of
    memory) come in its test slice, after 44 first attempts that all fit. Served the model's
    bound they all missed (1.8-2.0e10 bytes for peaks of 3.2-4.5e10) and the business score
    was 1.09x the request's; served their request, which nf-core raised with the attempt, they
    cover, and the score falls below the request's."""
    result = _evaluate(f"nextflow:{shared_file(SIZEY.format('eager'))}")
    test, y = result.split.test, result.y_test
    upper = result.methods["slocast"].bounds.upper
    retried = test["attempt"].to_numpy() > 1
    assert retried.sum() == 10
    np.testing.assert_array_equal(upper[retried], test["memory"].to_numpy()[retried])
    assert (y[retried] <= upper[retried]).all()
    request = result.methods["user_request"].metrics.business_score
    assert result.methods["slocast"].metrics.business_score < 0.85 * request


@pytest.mark.parametrize("workflow", ["iwd", "chipseq", "eager"])
def test_the_history_expert_on_traces_without_requests(tmp_path: Path, workflow: str) -> None:
    """Without requests most test tasks belong to processes the model was not trained on: a
    bound from each process's own recent outcomes, served where it has cost less (the lower
    of the two for a process with nothing on record), cuts the business score by more than
    30 % (measured: iwd 162 -> 105, chipseq 860 -> 146, eager 294 -> 102) at no loss of
    coverage."""
    data = load_dataset(f"nextflow:{_default_fields(tmp_path, workflow)}")
    base = QuantileForecaster(data.spec, 0.9)
    methods = [
        build_slocast(base, CalibrationParams(history_expert=on), fit_base=not on)
        for on in (False, True)
    ]
    methods[1].name = "history"
    result = run_backtest(data, methods, 0.9, 0.2, 0.2)
    model, history = result.methods["slocast"].metrics, result.methods["history"].metrics
    assert history.business_score < 0.7 * model.business_score
    assert history.coverage >= model.coverage - 0.01


def test_a_new_process_whose_module_ran_elsewhere_is_sized_from_that_run() -> None:
    """rnaseq runs the same nf-core modules under several subworkflows (SAMTOOLS_STATS after
    alignment and after duplicate marking). At a 0.8 promise enough processes started with a
    sibling on record for new and thin ones to be sized from their siblings: measured 183.1
    against 342.4 with every new process sized by all the others and thin ones given their
    request, coverage 0.885 and 0.870."""
    data = load_dataset(f"nextflow:{shared_file(SIZEY.format('rnaseq'))}")
    assert data.spec.group_path == ":"
    result = _side_by_side(
        data, {"modules": data.spec, "processes": replace(data.spec, group_path="")}, 0.8
    )
    modules, processes = result["modules"].metrics, result["processes"].metrics
    assert modules.business_score < 0.95 * processes.business_score
    assert modules.coverage >= processes.coverage - 0.01


def test_a_process_whose_memory_follows_its_input_is_sized_by_it() -> None:
    """eager's damageprofiler first runs in the test slice, its memory in proportion to what
    it reads (3-8 GB). The history expert standing on the line through each process's sizes
    (where it bounded the process's tasks more tightly than their 0.9 quantile) covers 50 of
    its 51 test tasks; standing on the quantile of its recent tasks, which lags behind growing
    inputs, 36. The whole slice: measured 79.3 against 102.2, coverage 0.908 and 0.886."""
    data = load_dataset(f"nextflow:{shared_file(SIZEY.format('eager'))}")
    by_size = "process_by_size_peak_rss"
    assert history_base_column(data.spec) == by_size
    quantile_only = replace(data.spec, numeric=tuple(c for c in data.spec.numeric if c != by_size))
    assert history_base_column(quantile_only) == "process_p90_peak_rss"
    result = _side_by_side(data, {"by_size": data.spec, "quantile": quantile_only}, 0.9)
    sized, quantile = result["by_size"].metrics, result["quantile"].metrics
    profiler = {name: r.per_group["damageprofiler"]["coverage"] for name, r in result.items()}
    assert profiler["by_size"] >= 0.9 > profiler["quantile"]
    assert sized.business_score < 0.85 * quantile.business_score
    assert sized.coverage >= quantile.coverage - 0.01
