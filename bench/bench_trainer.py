"""Benchmark: trainer ingest rows/s and retrain time, vs plain sqlite3 inserts in the same run.

Run: `make bench-trainer`. Ingest goes through the durable store exactly as the HTTP route
does (bucketing, stable-hash held-out choice, one committed transaction per batch of 1,000);
the baseline is sqlite3's own `executemany` of the same JSON rows into a bare table, also one
commit per batch, WAL + synchronous=FULL. Retrain time is fit + calibration + gating + publish.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from slocast.store import SampleStore, sqlite_url
from slocast.trainer.service import Trainer, TrainerConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.store.conftest import postgres_available, postgres_server
from tests.trainer.test_service import synthetic_llm_rows


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


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="slocast-bench-"))
    rows = synthetic_llm_rows(100_000, seed=0)
    baseline = bare_sqlite(rows, work / "bare.db")
    trainer = Trainer(SampleStore(sqlite_url(work / "home")), TrainerConfig(home=work / "home"))
    started = time.perf_counter()
    for start in range(0, len(rows), 1000):
        trainer.ingest("llm-ttft", rows[start : start + 1000])
    ingest = time.perf_counter() - started
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
        with postgres_server() as url:
            pg = Trainer(SampleStore(url), TrainerConfig(home=work / "pg"))
            started = time.perf_counter()
            for start in range(0, len(rows), 1000):
                pg.ingest("llm-ttft", rows[start : start + 1000])
            pg_seconds = time.perf_counter() - started
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
    table.add_row(
        "slocast ingest (SQLite WAL)",
        f"{len(rows):,}",
        f"{ingest:.2f}",
        f"{len(rows) / ingest:,.0f}",
        f"{ingest / baseline:.2f}x",
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


if __name__ == "__main__":
    main()
