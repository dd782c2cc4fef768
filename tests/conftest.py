"""Shared fixtures: where the real traces are, and small synthetic frames."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from slocast.schema import DomainSpec

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "data"
LLMD = BUNDLED / "llm_serving" / "llmd_h200_traces"
SHARED = Path(os.environ.get("SLOCAST_SHARED_DATA", REPO.parent / "shared" / "data"))


def free_port() -> int:
    """A TCP port free on loopback right now (for servers the tests start)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, attempts: int = 100) -> None:
    for _ in range(attempts):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port}")


def json_with(obj: Any, literal: str) -> str:
    """``obj`` as JSON, each ``"@"`` in it written as the raw JSON ``literal``: values
    ``json.dumps`` would write otherwise or not at all (``1e400``, ``NaN``, 2**70's digits)."""
    return json.dumps(obj).replace('"@"', literal)


def shared_file(relative: str) -> Path:
    """A trace from ../shared/data; the test skips (with the reason) when it is not there."""
    path = SHARED / relative
    if not path.is_file():
        pytest.skip(f"real trace {relative} not found under {SHARED} (set SLOCAST_SHARED_DATA)")
    return path


SWF = "hpc_swf/SDSC-SP2-1998-4.2-cln.swf.gz"
SIZEY = "task_memory/sizey_nfcore/trace_{}.csv.gz"
ALIBABA = "model_serving/alibaba_genai_gentd26/lora_request_trace.csv.gz"

SYNTH_SPEC = DomainSpec(
    name="synthetic",
    target="y",
    numeric=("x1", "x2"),
    categorical=("g",),
    group="g",
    user_request="request",
)


def synthetic_frame(n: int = 2000, seed: int = 0, shift_after: int | None = None) -> pd.DataFrame:
    """Jobs with a multiplicative log-normal outcome; optionally 3x larger after a row."""
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(0, 10, n)
    x2 = rng.normal(size=n)
    g = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])
    y = np.exp(0.2 * x1 + 0.3 * x2 + (g == "b") * 0.5 + rng.normal(scale=0.4, size=n))
    if shift_after is not None:
        y[shift_after:] *= 3.0
    t = np.arange(n, dtype=float)
    return pd.DataFrame(
        {
            "x1": x1,
            "x2": x2,
            "g": g,
            "y": y,
            "request": y * 0 + y.max(),
            "time": t,
            "known_at": t + 1,
        }
    )


def many_groups_frame(n: int = 2400, groups: int = 20, seed: int = 0) -> pd.DataFrame:
    """:func:`synthetic_frame` with ``groups`` processes, each using its own share of a
    request 20x the median outcome."""
    frame = synthetic_frame(n, seed)
    rng = np.random.default_rng(seed)
    frame["g"] = [f"p{i}" for i in rng.integers(0, groups, n)]
    frame["request"] = 20.0 * float(frame["y"].median())
    return frame


def late_jobs_frame(n: int = 800) -> pd.DataFrame:
    """:func:`synthetic_frame` where the first ten jobs ran 1 to 10 past their request."""
    frame = synthetic_frame(n)
    frame.loc[:9, "y"] = frame["request"][:10] + np.arange(1.0, 11.0)
    return frame


@pytest.fixture
def synth() -> pd.DataFrame:
    return synthetic_frame()
