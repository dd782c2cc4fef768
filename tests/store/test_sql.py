from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from slocast.errors import ConfigError
from slocast.store import SampleStore, is_heldout, llm_bucket, sqlite_url


def rows(n: int, waiting: int = 0) -> list[dict[str, float]]:
    return [{"num_request_waiting": waiting, "kv_cache_percentage": 0.1, "prefix_cache_score": 0.0,
             "input_token_length": i, "actual_ttft_ms": 10.0 + i} for i in range(n)]  # fmt: skip


def add(store: SampleStore, batch: list[dict[str, float]], share: float = 0.1) -> int:
    return store.add(
        "llm-ttft", batch, [llm_bucket(r) for r in batch], [is_heldout(r, share) for r in batch]
    )


def test_rows_are_durable_across_instances(store_url: str) -> None:
    first = SampleStore(store_url)
    assert add(first, rows(500)) == 500
    first.close()
    again = SampleStore(store_url)
    counts = again.counts("llm-ttft")
    assert counts.train + counts.test == 500
    assert 20 <= counts.test <= 90  # ~10% held out by a stable hash
    stored = again.rows("llm-ttft", heldout=False)
    assert [r["input_token_length"] for r in stored] == sorted(
        r["input_token_length"] for r in stored
    )
    # A retrain reads the rows stored up to its mark, none stored after it.
    mark = stored[len(stored) // 2]["_id"]
    assert again.rows("llm-ttft", heldout=False, up_to_id=mark) == [
        r for r in stored if r["_id"] <= mark
    ]
    again.close()


def test_full_buckets_evict_their_oldest_rows_and_keep_rare_regimes(store_url: str) -> None:
    store = SampleStore(store_url, per_bucket_cap=50)
    add(store, rows(5, waiting=20), share=0.0)  # a rare high-queue regime
    add(store, rows(400, waiting=0), share=0.0)  # a flood of idle rows
    buckets = store.bucket_counts("llm-ttft")
    assert buckets == {"q11+:kv2:p0": 5, "q0:kv2:p0": 50}
    kept = [
        r["input_token_length"]
        for r in store.rows("llm-ttft", heldout=False)
        if r["num_request_waiting"] == 0
    ]
    assert min(kept) == 350  # the newest 50 of the flood
    store.close()


def test_caps_hold_across_batches_restarts_and_flushes(store_url: str) -> None:
    """The store counts bucket sizes in memory: they must agree with the table after small
    batches, a reopen (sizes read back) and a flush (sizes dropped)."""
    store = SampleStore(store_url, per_bucket_cap=30)
    for _ in range(7):
        add(store, rows(11), share=0.0)
    assert store.bucket_counts("llm-ttft") == {"q0:kv2:p0": 30}
    store.close()
    reopened = SampleStore(store_url, per_bucket_cap=30)
    add(reopened, rows(5), share=0.0)
    assert reopened.bucket_counts("llm-ttft") == {"q0:kv2:p0": 30}
    reopened.flush("llm-ttft")
    add(reopened, rows(20), share=0.0)
    add(reopened, rows(20), share=0.0)
    assert reopened.bucket_counts("llm-ttft") == {"q0:kv2:p0": 30}
    kept = sorted(r["input_token_length"] for r in reopened.rows("llm-ttft", heldout=False))
    assert kept == sorted([*range(10, 20), *range(20)])  # the newest 30, oldest gone first
    reopened.close()


def test_flush_reports_what_it_removed(store_url: str) -> None:
    store = SampleStore(store_url)
    add(store, rows(200))
    before = store.counts("llm-ttft")
    flushed = store.flush("llm-ttft", train=True, test=False)
    assert flushed.train == before.train and flushed.test == 0
    assert store.counts("llm-ttft").train == 0 and store.counts("llm-ttft").test == before.test
    store.close()


def test_heldout_choice_is_stable_and_content_based() -> None:
    row = {"a": 1.0, "b": "x"}
    assert is_heldout(row, 0.5) == is_heldout(dict(reversed(list(row.items()))), 0.5)
    share = sum(is_heldout({"i": i}, 0.1) for i in range(10_000)) / 10_000
    assert share == pytest.approx(0.1, abs=0.01)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    store = SampleStore(url)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE slocast_schema_version SET version = 99"))
    store.close()
    with pytest.raises(ConfigError, match="newer than this slocast"):
        SampleStore(url)


def test_an_unreachable_store_at_start_up_is_one_line_without_the_password() -> None:
    from slocast.errors import SlocastError

    with pytest.raises(SlocastError, match="unreachable") as info:
        SampleStore("postgresql://slocast:secret@127.0.0.1:1/samples")  # nothing listens on 1
    assert info.value.field == "store_url"
    assert "***" in str(info.value) and "secret" not in str(info.value)
