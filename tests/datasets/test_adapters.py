"""Adapters against the real traces (row and drop counts) and against broken files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from slocast.datasets import KINDS, load_dataset, parse_dataset_arg
from slocast.datasets.units import parse_duration_s, parse_size, parse_timestamp_s
from slocast.errors import ConfigError, DataFormatError, EmptyDataError
from tests.conftest import ALIBABA, LLMD, SIZEY, SWF, shared_file


@pytest.mark.parametrize(
    ("kind", "file", "rows", "other"),
    [
        ("llmd-ttft", "bimodal-h200.jsonl.gz", 1660, 1740),
        ("llmd-tpot", "bimodal-h200.jsonl.gz", 1740, 1660),
        ("llmd-ttft", "chatbot-synthetic-h200.jsonl.gz", 1530, 1530),
    ],
)
def test_llmd_rows_split_by_target(kind: str, file: str, rows: int, other: int) -> None:
    data = load_dataset(f"{kind}:{LLMD / file}")
    assert data.rows == rows
    assert data.dropped == {"other_target": other}
    assert (data.frame[data.spec.target] > 0).all()
    assert data.frame["time"].is_monotonic_increasing
    # The outcome is known only after the request: never at its own time.
    assert (data.frame["known_at"] > data.frame["time"]).all()


def test_llmd_older_traces_without_cache_or_in_flight_fields(tmp_path: Path) -> None:
    # Traces recorded before llm-d added prefix-cache and in-flight fields: those read as 0.
    fields = ("prefix_cache_score", "prefill_tokens_in_flight", "decode_tokens_in_flight")
    with gzip.open(LLMD / "chatbot-synthetic-h200.jsonl.gz", "rt") as source:
        rows = [json.loads(line) for line in source]
    trace = tmp_path / "old.jsonl"
    trace.write_text("".join(json.dumps({k: v for k, v in r.items() if k not in fields}) + "\n"
                             for r in rows))  # fmt: skip
    data = load_dataset(f"llmd-tpot:{trace}")
    assert data.rows == 1530
    # Zero throughout: not features of this file.
    assert not set(fields) & set(data.spec.features)
    assert {"num_request_running", "kv_cache_percentage"} <= set(data.spec.features)


def test_swf_sdsc_counts_and_dropped_fields() -> None:
    data = load_dataset(f"swf:{shared_file(SWF)}")
    assert data.rows_read == 59715
    assert data.rows == 53999
    assert data.dropped == {"run_time_not_positive": 5681, "missing_request": 35}
    # Memory and partition are -1 throughout this log: not features.
    assert "requested_memory" not in data.spec.features
    assert "partition" not in data.spec.features
    assert {"user", "queue", "executable", "requested_time"} <= set(data.spec.features)
    frame = data.frame
    assert (frame["known_at"] >= frame["time"] + frame["run_time"]).all()
    assert float(np.median(frame["run_time"])) == pytest.approx(359, abs=1)
    assert float(np.median(frame["requested_time"])) == 5400


def test_swf_log_without_user_ids_has_no_groups(tmp_path: Path) -> None:
    # Anonymised logs may leave user and group ids at -1: run times are still predicted, with
    # one pooled calibration instead of one per user, and no per-user history.
    with gzip.open(shared_file(SWF), "rt") as source:
        jobs = [line.split() for line in source if not line.startswith(";")][:2000]
    log = tmp_path / "anonymous.swf"
    log.write_text("".join(" ".join([*f[:11], "-1", "-1", *f[13:]]) + "\n" for f in jobs))
    data = load_dataset(f"swf:{log}")
    assert data.spec.group is None
    assert "user" not in data.frame and "group_id" not in data.spec.features
    assert not [c for c in data.spec.features if c.startswith("user_prev")]
    assert {"queue", "executable", "requested_time"} <= set(data.spec.features)


@pytest.mark.parametrize(
    ("workflow", "rows", "dropped"),
    [
        ("chipseq", 2937, {"missing_peak_rss": 1}),
        ("eager", 1576, {}),
        ("iwd", 1661, {}),
        ("rnaseq", 1308, {}),
    ],
)
def test_nextflow_sizey_traces(workflow: str, rows: int, dropped: dict[str, int]) -> None:
    data = load_dataset(f"nextflow:{shared_file(SIZEY.format(workflow))}")
    assert data.rows == rows
    assert data.dropped == dropped
    assert data.spec.group == "process" and data.spec.user_request == "memory"
    # Sizey: no task exceeds its requested memory.
    assert (data.frame["peak_rss"] <= data.frame["memory"]).all()


def test_nextflow_keeps_the_attempt_count_for_retried_tasks() -> None:
    """nf-core retries a task that ran out of memory with its memory times the attempt: eager
    records ten markduplicates tasks only by their later attempt, each with a larger request
    than the process's first attempts and a peak past what those requested. The count stays
    where every task is a first attempt too (chipseq): a later trace's retries still count."""
    eager = load_dataset(f"nextflow:{shared_file(SIZEY.format('eager'))}")
    assert eager.spec.retry == "attempt" and "attempt" in eager.spec.optional
    retried = eager.frame[eager.frame["attempt"] > 1]
    assert sorted(retried["attempt"].tolist()) == [2.0] * 9 + [3.0]
    assert set(retried["process"]) == {"markduplicates"}
    first = eager.frame[
        (eager.frame["process"] == "markduplicates") & (eager.frame["attempt"] == 1)
    ]
    assert (retried["memory"] == retried["attempt"] * first["memory"].iloc[0]).all()
    assert (retried["peak_rss"] > first["memory"].max()).all()
    chipseq = load_dataset(f"nextflow:{shared_file(SIZEY.format('chipseq'))}")
    assert chipseq.spec.retry == "attempt" and (chipseq.frame["attempt"] == 1).all()


def test_nextflow_without_time_limits_drops_the_feature() -> None:
    data = load_dataset(f"nextflow:{shared_file(SIZEY.format('iwd'))}")
    assert "time_limit" not in data.spec.features  # '-' throughout the iwd trace


def test_alibaba_keeps_successful_requests() -> None:
    data = load_dataset(f"alibaba-lora:{shared_file(ALIBABA)}")
    assert data.rows == 26392
    assert data.dropped == {"not_succeeded": 431}
    assert float(np.median(data.frame["exec_time_seconds"])) == pytest.approx(23, abs=1)


def test_nextflow_human_readable_units(tmp_path: Path) -> None:
    trace = tmp_path / "trace.txt"
    trace.write_text(
        "task_id\tprocess\tcpus\tmemory\ttime\tpeak_rss\trchar\tsubmit\tcomplete\n"
        "1\tALIGN\t4\t8 GB\t2h\t3.5 GB\t1.2 GB\t2024-01-01 10:00:00.000\t2024-01-01 10:30:00.000\n"
        "2\tALIGN\t4\t8 GB\t2h\t-\t1 GB\t2024-01-01 10:01:00.000\t2024-01-01 10:20:00.000\n"
        "3\tSORT\t2\t4294967296\t30m\t1073741824\t5000\t2024-01-01 10:02:00.000\t-\n"
    )
    data = load_dataset(f"nextflow:{trace}")
    assert data.rows == 2 and data.dropped == {"missing_peak_rss": 1}
    first = data.frame.iloc[0]
    assert first["memory"] == 8 * 2**30 and first["peak_rss"] == 3.5 * 2**30
    assert first["known_at"] - first["time"] == 1800


def test_nextflow_keeps_only_finished_tasks(tmp_path: Path) -> None:
    # A task killed at its memory limit (exit 137) peaks at about that limit: its retry, with
    # more memory, shows what it needed. CACHED records are finished results of an earlier run.
    trace = tmp_path / "trace.txt"
    trace.write_text(
        "task_id\tprocess\tstatus\texit\tattempt\tcpus\tmemory\tpeak_rss\tsubmit\tcomplete\n"
        "1\tALIGN\tFAILED\t137\t1\t4\t8 GB\t8 GB\t1000\t2000\n"
        "2\tALIGN\tCOMPLETED\t0\t2\t4\t16 GB\t11 GB\t2000\t3000\n"
        "3\tSORT\tCACHED\t0\t1\t2\t4 GB\t1 GB\t500\t900\n"
        "4\tSORT\tABORTED\t-\t1\t2\t4 GB\t-\t3000\t-\n"
    )
    data = load_dataset(f"nextflow:{trace}")
    assert data.dropped == {"not_completed": 2}
    assert sorted(data.frame["peak_rss"] / 2**30) == [1, 11]
    # A "status" column of some other export, not Nextflow's task states: not a filter.
    other = tmp_path / "other.txt"
    other.write_text(trace.read_text().replace("CACHED", "ok").replace("COMPLETED", "ok")
                     .replace("FAILED", "ok").replace("ABORTED", "ok"))  # fmt: skip
    assert load_dataset(f"nextflow:{other}").dropped == {"missing_peak_rss": 1}


def test_nextflow_without_any_memory_request(tmp_path: Path) -> None:
    trace = tmp_path / "trace.txt"
    trace.write_text(
        "task_id\tprocess\tcpus\tmemory\tpeak_rss\tsubmit\tcomplete\n"
        "1\tALIGN\t4\t-\t3 GB\t1000\t2000\n"
        "2\tSORT\t2\t-\t1 GB\t1500\t2500\n"
    )
    data = load_dataset(f"nextflow:{trace}")
    assert data.rows == 2 and data.dropped == {}
    assert data.spec.user_request is None and "memory" not in data.spec.features


def test_nextflow_trace_with_the_default_fields(tmp_path: Path) -> None:
    # Nextflow's default trace has no process, cpus or memory columns: the process is the
    # task's name without its tag, and there is no request.
    trace = tmp_path / "trace.txt"
    trace.write_text(
        "task_id\thash\tname\tstatus\texit\tsubmit\tduration\tpeak_rss\n"
        "1\tab/12\tNFCORE:ALIGN (sample (1))\tCOMPLETED\t0\t1000\t5s\t3 GB\n"
        "2\tcd/34\tNFCORE:ALIGN (sample2)\tCOMPLETED\t0\t1500\t9s\t2 GB\n"
        "3\tef/56\tSORT\tCOMPLETED\t0\t1600\t1s\t1 GB\n"
    )
    data = load_dataset(f"nextflow:{trace}")
    assert data.rows == 3 and data.spec.user_request is None
    assert data.frame["process"].tolist() == ["NFCORE:ALIGN", "NFCORE:ALIGN", "SORT"]
    assert "cpus" not in data.spec.features and data.spec.group == "process"
    assert "attempt" not in data.spec.features and data.spec.retry == ""  # not recorded
    assert data.frame["known_at"].tolist() == [6.0, 10.5, 2.6]  # submit in ms, duration added
    no_name = tmp_path / "no-name.txt"
    no_name.write_text("task_id\tpeak_rss\tsubmit\n1\t1 GB\t1000\n")
    with pytest.raises(DataFormatError, match="missing column 'process'"):
        load_dataset(f"nextflow:{no_name}")


def test_units() -> None:
    assert parse_size("1.5 KB") == 1536
    assert parse_size("7") == 7
    assert parse_duration_s("1d 2h") == 93600
    assert parse_timestamp_s("1674490103249") == pytest.approx(1674490103.249)
    for bad, parse in (("lots", parse_size), ("soon", parse_duration_s)):
        with pytest.raises(ValueError):
            parse(bad)


def test_dataset_argument_errors() -> None:
    with pytest.raises(ConfigError, match="expected KIND:PATH"):
        parse_dataset_arg("no-colon")
    with pytest.raises(ConfigError, match="unknown dataset kind 'csv'"):
        parse_dataset_arg("csv:x.csv")
    assert set(KINDS) == {"llmd-ttft", "llmd-tpot", "swf", "nextflow", "alibaba-lora"}


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="no such file") as info:
        load_dataset(f"swf:{tmp_path / 'absent.swf'}")
    assert info.value.source == str(tmp_path / "absent.swf")
    with pytest.raises(DataFormatError, match="is a folder, not a trace file"):
        load_dataset(f"nextflow:{tmp_path}")


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(EmptyDataError, match="empty"):
        load_dataset(f"nextflow:{empty}")


def test_missing_column_is_named(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("process,cpus,memory,submit\nA,1,100,1\n")
    with pytest.raises(DataFormatError, match="missing column 'peak_rss'") as info:
        load_dataset(f"nextflow:{trace}")
    assert info.value.field == "peak_rss"


def test_nan_only_target_column(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("process,cpus,memory,peak_rss,submit\nA,1,100,-,1\nA,1,100,-,2\n")
    with pytest.raises(EmptyDataError, match="'peak_rss' has no usable values"):
        load_dataset(f"nextflow:{trace}")


def test_non_numeric_value_is_named(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text(
        '{"kv_cache_percentage": "lots", "input_token_length": 1, "num_request_waiting": 0, '
        '"num_request_running": 0, "prefix_cache_score": 0, "actual_ttft_ms": 5, '
        '"actual_tpot_ms": 0}\n'
    )
    with pytest.raises(DataFormatError, match="'kv_cache_percentage'"):
        load_dataset(f"llmd-ttft:{trace}")


@pytest.mark.parametrize(
    ("kind", "name", "text", "column"),
    [
        ("nextflow", "t.csv", "process,memory,peak_rss,submit\nA,1e400,100,1\n", "memory"),
        ("nextflow", "t.csv", "process,memory,peak_rss,submit\nA,4 GB,1e400,1\n", "peak_rss"),
        ("llmd-ttft", "t.jsonl", '{"kv_cache_percentage": 0.1, "input_token_length": 1e400, '
         '"num_request_waiting": 0, "num_request_running": 0, "prefix_cache_score": 0, '
         '"actual_ttft_ms": 5, "actual_tpot_ms": 0}\n', "input_token_length"),
        ("swf", "t.swf", "1 0 1 1e400 1 -1 -1 1 10 -1 1 1 1 -1 1 -1 -1 -1\n", "run_time"),
    ],
)  # fmt: skip
def test_an_infinite_value_is_named(
    tmp_path: Path, kind: str, name: str, text: str, column: str
) -> None:
    """``1e400`` parses, to infinity: a size, time or count no job has. An infinite peak used
    to crash evaluate (exit 1), an infinite request or input was trained on."""
    trace = tmp_path / name
    trace.write_text(text)
    with pytest.raises(DataFormatError, match=f"'{column}' has a value that is not a finite"):
        load_dataset(f"{kind}:{trace}")


def test_swf_with_wrong_field_count(tmp_path: Path) -> None:
    bad = tmp_path / "bad.swf"
    bad.write_text("; header\n1 2 3\n")
    with pytest.raises(DataFormatError, match="has 3 fields"):
        load_dataset(f"swf:{bad}")


def test_corrupt_gzip(tmp_path: Path) -> None:
    bad = tmp_path / "bad.swf.gz"
    bad.write_bytes(gzip.compress(b"1 2 3")[:12])
    with pytest.raises(DataFormatError, match="corrupt gzip"):
        load_dataset(f"swf:{bad}")


def test_history_features_use_only_finished_jobs() -> None:
    data = load_dataset(f"swf:{shared_file(SWF)}")
    frame = data.frame
    assert "user_prev_run_time" in data.spec.features
    assert "user_prev_run_time" in data.spec.optional
    # Recompute one job's feature by brute force from the jobs finished before its submission.
    row = frame.iloc[30000]
    same = frame[(frame["user"] == row["user"]) & (frame["known_at"] < row["time"])]
    expected = same.sort_values("known_at", kind="stable")["run_time"].iloc[-1]
    assert row["user_prev_run_time"] == expected
    # The 0.9 quantile of the user's latest 50 finished jobs (fewer for a young user's job).
    for row in (frame.iloc[30000], frame.iloc[40]):
        same = frame[(frame["user"] == row["user"]) & (frame["known_at"] < row["time"])]
        latest = same.sort_values("known_at", kind="stable")["run_time"].iloc[-50:]
        assert row["user_p90_run_time"] == np.quantile(latest, 0.9, method="inverted_cdf")


@pytest.mark.parametrize(
    ("workflow", "process", "low", "high"),
    [("eager", "damageprofiler", 0.75, 1.0), ("iwd", "graphToShapefile", 0.0, 0.35)],
)
def test_a_process_is_sized_by_its_input_where_that_bounds_it_more_tightly(
    workflow: str, process: str, low: float, high: float
) -> None:
    """eager's damageprofiler needs memory in proportion to what it reads; iwd's
    graphToShapefile needs one of two amounts, whatever it reads. The line through a process's
    finished tasks (recomputed here by brute force) sizes most tasks of the first (measured
    80 %) and few of the second (23 %), which keep their recent 0.9 quantile."""
    data = load_dataset(f"nextflow:{shared_file(SIZEY.format(workflow))}")
    column = "process_by_size_peak_rss"
    assert column in data.spec.features and column in data.spec.optional
    jobs = data.frame[data.frame["process"] == process]
    sized = jobs[column].notna() & (jobs[column] != jobs["process_p90_peak_rss"])
    assert low <= sized.mean() <= high
    for _, row in jobs[sized].iloc[::9].iterrows():
        done = jobs[jobs["known_at"] < row["time"]].sort_values("known_at", kind="stable")
        size, need = done["rchar"].iloc[-50:], done["peak_rss"].iloc[-50:]  # the latest 50
        slope = max(0.0, np.polyfit(size, need, 1)[0])
        expected = need.mean() + slope * (row["rchar"] - size.mean())
        assert row[column] == pytest.approx(max(0.0, expected), rel=5e-4)  # 4 digits
