"""The simulator's trace readers: real formats read, bad values named (exit 2, never a crash)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from slocast.errors import ConfigError, DataFormatError
from slocast.sim import AutoscaleScenario
from slocast.sim.place import PlaceScenario
from slocast.sim.route import RouteScenario
from slocast.sim.traces import load_llm_requests, load_rates

AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
MOONCAKE = {"timestamp": 0, "input_length": 1024, "output_length": 8, "hash_ids": [1, 2]}


def test_both_llm_formats_in_arrival_order(tmp_path: Path) -> None:
    azure = tmp_path / "azure.csv"
    azure.write_text(AZURE_HEADER + "2023-11-16 18:17:04.5,300,2\n2023-11-16 18:17:03.5,4808,0\n")
    requests = load_llm_requests("azure", azure)
    assert requests.arrival_s.tolist() == [0.0, 1.0]
    assert requests.input_tokens.tolist() == [4808.0, 300.0]
    assert requests.output_tokens.tolist() == [1.0, 2.0]  # at least the first token
    mooncake = tmp_path / "mooncake.jsonl.gz"
    rows = [MOONCAKE | {"timestamp": 1500}, MOONCAKE | {"hash_ids": [7]}]
    mooncake.write_bytes(gzip.compress("\n".join(map(json.dumps, rows)).encode()))
    requests = load_llm_requests("mooncake", mooncake, limit=1)
    assert requests.arrival_s.tolist() == [0.0] and requests.prefix_blocks == [(7,)]


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        ("azure", AZURE_HEADER + "2023-11-16 18:17:03,x,1\n", "'ContextTokens' has a value that"),
        ("azure", AZURE_HEADER + "2023-11-16 18:17:03,-5,1\n", "'ContextTokens' must hold token"),
        ("azure", AZURE_HEADER + "2023-11-16 18:17:03,5,1e400\n", "'GeneratedTokens' has a value"),
        ("azure", AZURE_HEADER + "yesterday,5,1\n", "'TIMESTAMP' has a value that is not a time"),
        ("azure", "time,tokens\n1,2\n", "missing column 'TIMESTAMP'"),
        ("mooncake", json.dumps(MOONCAKE | {"output_length": 1e400}), "not a finite number"),
        ("mooncake", json.dumps(MOONCAKE | {"input_length": -3}), "must hold token counts >= 0"),
        ("mooncake", json.dumps(MOONCAKE | {"timestamp": "noon"}), "'timestamp' has a value"),
        ("mooncake", json.dumps(MOONCAKE | {"hash_ids": "abc"}), "'hash_ids' must be a list"),
        ("mooncake", json.dumps(MOONCAKE) + "\n{not json", "line 2 is not JSON"),
        ("mooncake", "[1, 2]", "line 1 is not a JSON object"),
    ],
)
def test_a_bad_value_is_named(tmp_path: Path, kind: str, text: str, message: str) -> None:
    """Each of these used to end in a traceback (exit 1), or, for an infinite output length,
    in a replay that never ended; a negative length was replayed."""
    trace = tmp_path / "trace"
    trace.write_text(text + "\n")
    with pytest.raises(DataFormatError, match=message):
        load_llm_requests(kind, trace)


@pytest.mark.parametrize("text", ["5 7 nan 3", "5 inf", "5 -1"])
def test_rates_must_be_finite_and_not_negative(tmp_path: Path, text: str) -> None:
    trace = tmp_path / "workload.txt"
    trace.write_text(text)
    with pytest.raises(DataFormatError, match="finite and not negative"):
        load_rates(trace)


@pytest.mark.parametrize(
    ("scenario", "field"),
    [
        (lambda: RouteScenario(replicas=0), "replicas"),
        (lambda: RouteScenario(load=float("nan")), "load"),
        (lambda: RouteScenario(ttft_slo_s=-1.0), "ttft_slo_s"),
        (lambda: RouteScenario(warmup_fraction=1.0), "warmup_fraction"),
        (lambda: AutoscaleScenario(percentile=1.5), "percentile"),
        (lambda: AutoscaleScenario(service_rate=0.0), "service_rate"),
        (lambda: PlaceScenario(servers=0), "servers"),
    ],
)
def test_scenarios_refuse_values_no_replay_can_run(scenario: Any, field: str) -> None:
    """A zero load or no replica used to end the replay in a division by zero or an empty
    min(); NaN compared false and ran."""
    with pytest.raises(ConfigError) as error:
        scenario()
    assert error.value.field == field


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--load", "0"], "load must be > 0"),
        (["--replicas", "0"], "replicas must be >= 1"),
        (["--requests", "-5"], "requests must be >= 1"),  # sliced off the end before
    ],
)
def test_cli_route_options_out_of_range_exit_2(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    trace = tmp_path / "mooncake.jsonl"
    trace.write_text(json.dumps(MOONCAKE) + "\n")
    run = subprocess.run(
        [sys.executable, "-m", "slocast", "simulate", "--scenario", "route",
         "--trace", f"mooncake:{trace}", *flags],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert message in run.stderr
