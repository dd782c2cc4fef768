"""The workbench's choice per family: the study's best, or its defaults as plain split CQR."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from slocast.datasets import load_dataset
from slocast.evaluation import run_backtest, standard_methods
from slocast.tuning.space import PLAIN_CQR, default_candidate, plain_cqr
from slocast.tuning.study import SearchConfig
from slocast.tuning.workbench import tune
from tests.conftest import SIZEY, SWF, shared_file

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]

SEARCH = SearchConfig(trials=3, folds=3, threads_per_trial=1)  # two pytest workers, two cores


def _without_requests(tmp_path: Path, jobs: int) -> Path:
    """SDSC-SP2's first ``jobs`` jobs with the requested time (field 9) unknown, as logs
    that do not record it write it (-1)."""
    out = tmp_path / "no-request.swf"
    with gzip.open(shared_file(SWF), "rt") as source, out.open("w") as sink:
        kept = 0
        for line in source:
            fields = line.split()
            if line.startswith(";") or not fields:
                sink.write(line)
                continue
            if kept == jobs:
                break
            fields[8] = "-1"
            sink.write(" ".join(fields) + "\n")
            kept += 1
    return out


def test_a_log_without_requests_deploys_plain_cqr(tmp_path: Path) -> None:
    """Without requests nothing caps a bound: one SDSC-SP2 user's jobs of 34-1,300 s got
    bounds of 180,000-600,000 s from the per-user windows at ACI's raised levels (measured
    with `slocast evaluate`), and the study's best after a few trials scores far above plain
    CQR on the same folds. The workbench deploys plain CQR there and keeps the promise."""
    data = load_dataset(f"swf:{_without_requests(tmp_path, 20_000)}")
    assert data.spec.user_request is None
    result = tune(data, ["lightgbm"], SEARCH)
    deployed = result.families["lightgbm"]
    assert deployed.source == "plain-cqr"
    default = default_candidate("lightgbm", data.spec, 0.9, SEARCH.threads)
    assert deployed.candidate == plain_cqr(default)
    assert deployed.trials == 3  # the study ran; its best lost on the folds
    assert deployed.test is not None
    assert deployed.test.coverage == pytest.approx(0.9, abs=0.015)
    # What `slocast evaluate` deploys at its defaults on the same test slice.
    evaluated = run_backtest(data, standard_methods(data.spec, 0.9), 0.9, 0.2, 0.2)
    assert deployed.test.business_score < 0.7 * evaluated.methods["slocast"].metrics.business_score


def test_where_the_search_pays_its_best_is_kept() -> None:
    """chipseq's processes differ too much for one pooled offset: the study's defaults (the
    first trial) already score clearly lower than plain CQR, so the search's model stays."""
    data = load_dataset(f"nextflow:{shared_file(SIZEY.format('chipseq'))}")
    result = tune(data, ["lightgbm"], SEARCH)
    deployed = result.families["lightgbm"]
    assert deployed.source == "search"
    assert deployed.candidate.calibration.min_group_size != PLAIN_CQR["min_group_size"]
    plain_points = [p for p in result.points if p.key == "lightgbm#plain-cqr"]
    assert len(plain_points) == 1  # scored, and on the Pareto points the strategies pick from
