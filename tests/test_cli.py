"""The CLI end to end, through a real subprocess: outputs, exit codes, messages."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import LLMD, SWF, shared_file

TTFT = f"llmd-ttft:{LLMD / 'chatbot-synthetic-h200.jsonl.gz'}"
METRICS = {
    "coverage",
    "mean_bound",
    "pinball_loss",
    "under_alloc_pct",
    "over_alloc_pct",
    "business_score",
}


def slocast(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slocast", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_evaluate_json_has_every_field(tmp_path: Path) -> None:
    run = slocast("evaluate", "--dataset", TTFT, "--json", "--report", str(tmp_path / "report"))
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["rows"] == 1530 and out["train_rows"] + out["test_rows"] <= out["rows"]
    assert out["target_coverage"] == 0.9
    assert {"slocast", "quantile_raw"} <= set(out["methods"])
    for metrics in out["methods"].values():
        assert set(metrics) == METRICS
    assert (tmp_path / "report" / "report.html").stat().st_size > 10_000
    assert (tmp_path / "report" / "rolling_coverage.png").is_file()


def test_evaluate_a_swf_log_that_records_no_requested_time(tmp_path: Path) -> None:
    # Some archive logs leave the requested time at -1 throughout: run times are still
    # predicted, with no request to compare against.
    with gzip.open(shared_file(SWF), "rt") as source:
        jobs = [line.split() for line in source if not line.startswith(";")][:3000]
    log = tmp_path / "no-request.swf"
    log.write_text("".join(" ".join([*f[:8], "-1", *f[9:]]) + "\n" for f in jobs))
    run = slocast("evaluate", "--dataset", f"swf:{log}", "--json")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert "user_request" not in out["methods"] and "missing_request" not in out["dropped"]
    assert out["request_grace"] == {}  # nothing to cap bounds at
    assert 0.8 <= out["methods"]["slocast"]["coverage"] <= 1.0


def test_evaluate_table_and_user_request_column(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    rows = ["process,cpus,memory,peak_rss,submit,complete"]
    for i in range(300):
        rows.append(f"P{i % 3},1,{1000 + i % 7},{100 + (i * 37) % 500},{i * 1000},{i * 1000 + 500}")
    trace.write_text("\n".join(rows) + "\n")
    run = slocast("evaluate", "--dataset", f"nextflow:{trace}", "--json")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert "user_request" in out["methods"]
    assert out["request_grace"] == {"slocast": 0.0}  # every task stayed under its memory
    report = tmp_path / "report"
    table = slocast("evaluate", "--dataset", f"nextflow:{trace}", "--report", str(report))
    assert "slocast" in table.stdout and "score vs request" in table.stdout
    assert "caps bounds at the request + 0 bytes: no training job ran past its" in table.stdout
    assert "bounds stop at the request + 0 bytes" in (report / "report.md").read_text()


def test_train_then_predict(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    run = slocast(
        "train", "--dataset", TTFT, "--out", str(bundle), env={"SLOCAST_TRAIN_THREADS": "1"}
    )
    assert run.returncode == 0, run.stderr
    models = [f.read_text() for f in bundle.glob("*.txt")]
    assert models and all("[num_threads: 1]" in m for m in models)
    with gzip.open(LLMD / "chatbot-synthetic-h200.jsonl.gz", "rt") as trace:
        lines = trace.read().splitlines()[:5]
    run = slocast("predict", "--bundle", str(bundle), "--input", "-", stdin="\n".join(lines))
    assert run.returncode == 0, run.stderr
    predictions = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(predictions) == 5
    for p in predictions:
        assert 0 < p["point"] <= p["upper"]
        assert p["coverage"] == 0.9 and p["domain"] == "llm-ttft"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("evaluate", "--dataset", "swf:/nonexistent.swf"), "no such file"),
        (("evaluate", "--dataset", "parquet:/x"), "unknown dataset kind"),
        (("evaluate", "--dataset", TTFT, "--target-coverage", "1.2"), "target_coverage"),
        (("evaluate", "--dataset", TTFT, "--family", "forest"), "model_family"),
        (("predict", "--bundle", "/nonexistent"), "not a slocast bundle"),
        (("bench", "serve", "warp"), "unknown benchmark 'warp'"),
        # A gRPC port out of range used to serve on a port of grpcio's choosing.
        (("serve", "grpc", "--bundle", "/nonexistent", "--port", "99999"), "'--port'"),
        (("dashboard", "--port", "0"), "'--port'"),  # it was a traceback
        # These started the app, which then showed a warning on one page or none.
        (("dashboard", "--trainer", "trainer:8000"), "trainer URL must start with http://"),
        (("dashboard", "--trace", "nextflow:/nonexistent.csv"), "no such file: /nonexistent.csv"),
        (("dashboard", "--sim-results", str(LLMD / "bimodal-h200-spec.yaml")), "not JSON"),
    ],
)
def test_bad_input_exits_2_with_a_message(args: tuple[str, ...], message: str) -> None:
    run = slocast(*args)
    assert run.returncode == 2
    assert message in run.stderr


def test_wrong_column_and_empty_file(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("process,cpus,memory,submit\nA,1,100,1\n")
    run = slocast("evaluate", "--dataset", f"nextflow:{wrong}")
    assert (
        run.returncode == 2
        and "missing column 'peak_rss'" in run.stderr
        and str(wrong) in run.stderr
    )
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    run = slocast("evaluate", "--dataset", f"llmd-ttft:{empty}")
    assert run.returncode == 2 and "empty" in run.stderr


def test_an_output_path_that_cannot_be_written_exits_2_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    run = slocast("train", "--dataset", TTFT, "--no-compile", "--out", str(blocker / "bundle"))
    assert run.returncode == 2, run.stderr  # it was a traceback and exit 1
    assert str(blocker) in run.stderr and "Traceback" not in run.stderr


def test_predict_rejects_bad_lines(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    assert slocast("train", "--dataset", TTFT, "--no-compile", "--out", str(bundle)).returncode == 0
    run = slocast(
        "predict", "--bundle", str(bundle), "--input", "-", stdin='{"kv_cache_percentage": 0.1}\n'
    )
    assert run.returncode == 2 and "missing" in run.stderr
    run = slocast("predict", "--bundle", str(bundle), "--input", "-", stdin="not json\n")
    assert run.returncode == 2 and "line 1" in run.stderr
    # A bad job is named by its line, blank lines counted: not by its index among the jobs.
    with gzip.open(TTFT.split(":", 1)[1], "rt") as trace:
        good = json.dumps(json.loads(trace.readline()))
    bad = good.replace('"input_token_length": ', '"input_token_length": "many", "x": ')
    run = slocast("predict", "--bundle", str(bundle), "--input", "-",
                  stdin=f"{good}\n\n{good}\n\n{bad}\n")  # fmt: skip
    assert run.returncode == 2
    assert "line 5: 'input_token_length' must be a number" in run.stderr, run.stderr
    assert "field=line 5.input_token_length" in run.stderr


def test_report_writes_a_self_contained_page(tmp_path: Path) -> None:
    run = slocast("report", "--dataset", TTFT, "--out", str(tmp_path / "r"))
    assert run.returncode == 0, run.stderr
    page = Path(run.stdout.strip())
    assert page == tmp_path / "r" / "report.html"
    html = page.read_text()
    assert html.count("data:image/png;base64,") == 3 and "slocast" in html
    bad = slocast("report", "--dataset", "nope:x")
    assert bad.returncode == 2 and "unknown dataset kind 'nope'" in bad.stderr


@pytest.mark.parametrize(
    ("args", "missing", "extra"),
    [
        (["trainer"], "uvicorn", "serve"),
        (["trainer"], "sqlalchemy", "store"),
        (["serve", "http", "--bundle", "x"], "uvicorn", "serve"),
        (["serve", "grpc", "--bundle", "x"], "grpc", "serve"),
    ],
)
def test_a_missing_extra_names_what_to_install(args: list[str], missing: str, extra: str) -> None:
    """A core install (as `make demo` makes) asked to serve: exit 2 and the pip line, not an
    ImportError's traceback."""
    hide = f"import sys; sys.modules[{missing!r}] = None; sys.argv = ['slocast', *{args!r}]"
    run = subprocess.run(
        [sys.executable, "-c", f"{hide}; from slocast.cli import app; app()"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr
    assert f"needs {missing}: pip install 'slocast[{extra}]'" in run.stderr
    assert "Traceback" not in run.stderr


def test_every_benchmark_the_cli_names_is_a_script_of_the_checkout() -> None:
    from slocast.cli.tools import BENCHMARKS, _bench_dir

    scripts = {p.stem.removeprefix("bench_") for p in _bench_dir().glob("bench_*.py")}
    assert scripts == set(BENCHMARKS)
