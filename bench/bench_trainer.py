"""Benchmark: trainer ingest rows/s and retrain time, vs plain sqlite3 inserts in the same run.

Run: `make bench-trainer`. Ingest goes through the durable store exactly as the HTTP route
does (bucketing, stable-hash held-out choice, one committed transaction per batch of 1,000);
the baseline is sqlite3's own `executemany` of the same JSON rows into a bare table, also one
commit per batch, WAL + synchronous=FULL. Retrain time is fit + calibration + gating + publish.

Then, with real processes (`slocast trainer` and `slocast serve http --training-server-url`),
the time from a 202 on `/add_training_data_bulk` to the prediction server serving a new model,
against the in-process retrain of the same rows measured in the same run: the first model
(2,000 rows of the bundled llm-d H200 trace), then the next one after 1,000 more rows, at
llm-d's default sync interval (`MODEL_SYNC_INTERVAL_SEC`, 10 s) and at 1 s. The server watches
the trainer's bundle listing, so a publish reaches it without waiting for the interval.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from slocast.store import SampleStore, sqlite_url
from slocast.trainer.service import Trainer, TrainerConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import LLMD
from tests.store.conftest import postgres_available, postgres_server
from tests.trainer.test_e2e import trainer_and_server
from tests.trainer.test_service import synthetic_llm_rows

TRAIN_ROWS, MORE_ROWS = 2000, 1000


def bare_sqlite(rows: list[dict[str, float]], path: Path) -> float:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT)")
    started = time.perf_counter()
    for start in range(0, len(rows), 1000):
        with conn:
            conn.executemany(
                "INSERT INTO t (payload) VALUES (?)",
                [(json.dumps(r),) for r in rows[start : start + 1000]],
            )
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def trace_rows() -> list[dict[str, Any]]:
    with gzip.open(LLMD / "chatbot-synthetic-h200.jsonl.gz", "rt") as handle:
        return [json.loads(line) for line in handle]


def served_version(client: httpx.Client, url: str) -> str:
    models = client.get(f"{url}/v1/models").json()["models"]
    return next(m["version"] for m in models if m["domain"] == "llm-ttft")


def ingest_to_served(work: Path, rows: list[dict[str, Any]], sync_s: float) -> list[float]:
    """Seconds from the ingest's 202 to a new TTFT model on the prediction server: the first
    model, then the next after more rows."""
    home = work / f"sync{sync_s:g}"
    home.mkdir(parents=True)
    with trainer_and_server(home, sync_s) as (trainer, server), httpx.Client(timeout=30) as client:
        waits = []
        for batch in (rows[:TRAIN_ROWS], rows[TRAIN_ROWS : TRAIN_ROWS + MORE_ROWS]):
            before = served_version(client, server)
            started = time.perf_counter()
            posted = client.post(f"{trainer}/add_training_data_bulk", json={"entries": batch})
            assert posted.status_code == 202, posted.text
            while served_version(client, server) == before:
                if time.perf_counter() - started > 120:
                    raise TimeoutError(f"no new model served in 120 s (logs under {home})")
                time.sleep(0.01)
            waits.append(time.perf_counter() - started)
    return waits


def timed_ingest(trainer: Trainer, rows: list[dict[str, Any]], validated: bool) -> float:
    """Seconds to ingest ``rows`` in batches of 1,000, as the routes post them."""
    started = time.perf_counter()
    for start in range(0, len(rows), 1000):
        trainer.ingest("llm-ttft", rows[start : start + 1000], validated=validated)
    return time.perf_counter() - started


def retrain_alone(work: Path, rows: list[dict[str, Any]]) -> float:
    """The in-process retrain (fit + calibration + gate + publish) of the first batch."""
    trainer = Trainer(SampleStore(sqlite_url(work / "alone")), TrainerConfig(home=work / "alone"))
    ttft = [{k: v for k, v in r.items() if k != "actual_tpot_ms"} for r in rows[:TRAIN_ROWS]]
    trainer.ingest("llm-ttft", [r for r in ttft if r["actual_ttft_ms"] > 0])
    started = time.perf_counter()
    trainer.retrain("llm-ttft")
    return time.perf_counter() - started


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="slocast-bench-"))
    rows = synthetic_llm_rows(100_000, seed=0)
    baseline = bare_sqlite(rows, work / "bare.db")
    trainer = Trainer(SampleStore(sqlite_url(work / "home")), TrainerConfig(home=work / "home"))
    # As /add_training_data_bulk calls it: its wire model has checked the inputs already.
    ingest = timed_ingest(trainer, rows, validated=True)
    # As /v1/{domain}/samples calls it: ingest checks each input's type and range itself.
    home = work / "checked"
    checked = timed_ingest(Trainer(SampleStore(sqlite_url(home)), TrainerConfig(home=home)), rows,
                           validated=False)  # fmt: skip
    table = Table(title="slocast trainer (2-core machine)")
    for column in ("step", "rows", "seconds", "rows/s", "ratio vs bare sqlite3"):
        table.add_column(column, justify="left" if column == "step" else "right")
    table.add_row(
        "bare sqlite3 executemany (baseline)",
        f"{len(rows):,}",
        f"{baseline:.2f}",
        f"{len(rows) / baseline:,.0f}",
        "1.00x",
    )
    if postgres_available():
        with postgres_server() as server:
            pg = Trainer(SampleStore(server.url), TrainerConfig(home=work / "pg"))
            pg_seconds = timed_ingest(pg, rows, validated=True)
            pg.store.close()
    else:
        pg_seconds = float("nan")
    table.add_row(
        "slocast ingest (PostgreSQL, local)",
        f"{len(rows):,}",
        f"{pg_seconds:.2f}",
        f"{len(rows) / pg_seconds:,.0f}",
        f"{pg_seconds / baseline:.2f}x",
    )
    for label, seconds in (
        ("slocast ingest (SQLite WAL)", ingest),
        ("slocast ingest (SQLite WAL), inputs checked in ingest", checked),
    ):
        table.add_row(
            label,
            f"{len(rows):,}",
            f"{seconds:.2f}",
            f"{len(rows) / seconds:,.0f}",
            f"{seconds / baseline:.2f}x",
        )
    for n in (10_000, 100_000):
        sized = Trainer(SampleStore(sqlite_url(work / f"r{n}")), TrainerConfig(home=work / f"r{n}"))
        for start in range(0, n, 1000):
            sized.ingest("llm-ttft", rows[start : start + 1000])
        started = time.perf_counter()
        decision = sized.retrain("llm-ttft")
        elapsed = time.perf_counter() - started
        kept = decision.train_rows
        table.add_row(
            f"retrain + gate + publish ({kept:,} rows kept)",
            f"{n:,}",
            f"{elapsed:.2f}",
            f"{n / elapsed:,.0f}",
            "-",
        )
    Console(width=140).print(table)
    llm_rows = trace_rows()
    alone = retrain_alone(work, llm_rows)
    served = Table(title="ingest to a new model served, real processes (TTFT, llm-d H200 trace)")
    for column in ("step", "rows posted", "seconds", "ratio vs retrain alone"):
        served.add_column(column, justify="left" if column == "step" else "right")
    served.add_row("in-process retrain of the first rows (baseline)", f"{TRAIN_ROWS:,}",
                   f"{alone:.2f}", "1.00x")  # fmt: skip
    for sync_s in (10.0, 1.0):
        first, later = ingest_to_served(work, llm_rows, sync_s)
        for label, count, seconds in (("first model", TRAIN_ROWS, first),
                                      ("next model", MORE_ROWS, later)):  # fmt: skip
            served.add_row(f"{label}, sync interval {sync_s:g} s", f"{count:,}",
                           f"{seconds:.2f}", f"{seconds / alone:.2f}x")  # fmt: skip
    Console(width=140).print(served)


if __name__ == "__main__":
    main()
