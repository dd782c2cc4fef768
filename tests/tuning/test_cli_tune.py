"""`slocast tune` end to end on a real trace: JSON contract, bundles, reports, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from slocast.artifacts import DeployableModel, load_bundle
from slocast.datasets import load_dataset
from slocast.tuning.selection import Contender, choose_family
from tests.conftest import SIZEY, shared_file

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]


def tune(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SLOCAST_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "slocast", "tune", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


@pytest.fixture(scope="module")
def iwd() -> str:
    return f"nextflow:{shared_file(SIZEY.format('iwd'))}"


def test_tune_json_bundles_and_report(iwd: str, tmp_path: Path) -> None:
    run = tune(
        tmp_path,
        "--dataset", iwd, "--trials", "4", "--family", "lightgbm", "--family", "bins-logistic",
        "--folds", "2", "--out", str(tmp_path / "bundles"), "--no-compile",
        "--report", str(tmp_path / "rep"),
        "--json",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    best = out["best"]
    assert best["family"] in {"lightgbm", "bins-logistic"}
    assert {"params", "business_score", "under_alloc_pct", "over_alloc_pct"} <= set(best)
    assert set(out["baselines"]) == {"user_request", "vpa_p90"}
    request = out["baselines"]["user_request"]
    # The request never under-allocates on this trace: its score is its waste.
    assert request["under_alloc_pct"] == 0 and request["business_score"] > 100
    assert best["score_vs_request"] == pytest.approx(
        best["business_score"] / request["business_score"]
    )
    assert set(out["strategies"]) == {"balanced", "small-waste", "tiny-under-alloc"}
    assert {"balanced", "user_request", "vpa_p90"} <= set(out["retry"]["results"])
    assert out["families"]["lightgbm"]["trials"] == 4
    # Each family's best trial keeps its folds' scores, and the family deployed is the first
    # one given unless the other scores clearly lower on the same folds.
    contenders = []
    for name in ("lightgbm", "bins-logistic"):
        family = out["families"][name]
        folds = family["cv_fold_scores"]
        assert len(folds) == family["cv"]["folds"] >= 1
        assert np.mean(folds) == pytest.approx(family["cv"]["business_score"])
        contenders.append(Contender(name, family["cv"]["business_score"], tuple(folds)))
    assert best["family"] == choose_family(contenders)
    # Each family deployed its study's best or, where clearly lower, plain CQR; JSON and the
    # report say which.
    sources = {name: out["families"][name]["source"] for name in ("lightgbm", "bins-logistic")}
    assert set(sources.values()) <= {"search", "plain-cqr"}
    assert best["source"] == sources[best["family"]]
    for name in ("lightgbm", "bins-logistic"):
        model = DeployableModel.load(tmp_path / "bundles" / name)
        assert model.metadata["family"] == name
        assert model.metadata["provenance"]["tuning"]["family"] == name
        frame = load_dataset(iwd).frame.tail(50)
        bounds = model.predict(frame.drop(columns=["process_prev_peak_rss"]))
        assert list(bounds.columns) == ["point", "upper"] and bounds.index.equals(frame.index)
        assert (bounds["upper"] > 0).all() and (bounds["upper"] >= bounds["point"]).all()
        # The same bundle the prediction server loads.
        assert load_bundle(tmp_path / "bundles" / name).version
    for name in ("comparison.png", "pareto.png", "tune.html", "tune.md", "tune.json"):
        assert (tmp_path / "rep" / name).stat().st_size > 500
    # The floor of any method that gives a process nothing is known of its request, beside
    # the request on the same test slice.
    floor = out["references"]["request_until_known"]
    assert floor["coverage"] == 1.0 and floor["business_score"] < request["business_score"]
    report = (tmp_path / "rep" / "tune.md").read_text()
    assert "floor for request fallback" in report
    assert f"Family chosen by cross-validation: **{best['family']}**" in report
    folds = " / ".join(f"{v:.1f}" for v in out["families"]["lightgbm"]["cv_fold_scores"])
    assert "cv_folds" in report and folds in report
    assert "| trials | source |" in report and f"| {sources['lightgbm']} |" in report


def test_preprocess_only_then_skip_preprocessing(iwd: str, tmp_path: Path) -> None:
    skipped = tune(tmp_path, "--dataset", iwd, "--skip-preprocessing")
    assert skipped.returncode == 2
    assert "--preprocess-only" in skipped.stderr and "skip_preprocessing" in skipped.stderr
    only = tune(tmp_path, "--dataset", iwd, "--preprocess-only")
    assert only.returncode == 0, only.stderr
    cached = list((tmp_path / "cache").glob("nextflow-*.parquet"))
    assert len(cached) == 1
    assert len(pd.read_parquet(cached[0])) == load_dataset(iwd).rows
    run = tune(
        tmp_path, "--dataset", iwd, "--skip-preprocessing", "--no-run-search",
        "--family", "lightgbm", "--folds", "2", "--json",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    lightgbm = json.loads(run.stdout)["families"]["lightgbm"]
    assert lightgbm["trials"] == 0 and lightgbm["source"] == "defaults"
    # For people: the deployed family is marked, and each family's fold scores are shown.
    table = tune(
        tmp_path, "--dataset", iwd, "--skip-preprocessing", "--no-run-search",
        "--family", "lightgbm", "--folds", "2",
    )  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert "lightgbm (deployed)" in table.stdout and "cv folds" in table.stdout
    assert "deployed: the first family given" in table.stdout


def test_the_cache_key_follows_the_code_that_builds_the_frame(
    iwd: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frame cached by other adapter code (a working copy between two commits of one
    version) is not read back: its features may differ."""
    from slocast.tuning import cache

    before = cache.cache_path(iwd, tmp_path)
    assert cache.cache_path(iwd, tmp_path) == before  # stable for the same code
    monkeypatch.setattr(cache, "frame_code_digest", lambda: "other adapter code")
    assert cache.cache_path(iwd, tmp_path) != before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--family", "randomforestish"], "unknown model family 'randomforestish'"),
        (["--task-type", "clustering"], "unknown task type 'clustering'"),
        (["--bins", "2-20"], "field=bins"),
        (["--pruner", "never"], "unknown pruner 'never'"),
        (["--storage", "mysql://db/optuna"], "storage URL must start with sqlite"),
    ],
)
def test_bad_options_exit_2_naming_the_field(
    iwd: str, tmp_path: Path, args: list[str], message: str
) -> None:
    run = tune(tmp_path, "--dataset", iwd, *args)
    assert run.returncode == 2
    assert message in run.stderr


def test_empty_trace_exits_2(tmp_path: Path) -> None:
    trace = tmp_path / "empty.csv"
    trace.write_text("process,cpus,memory,peak_rss,submit\n")
    run = tune(tmp_path, "--dataset", f"nextflow:{trace}")
    assert run.returncode == 2
    assert "empty.csv" in run.stderr
