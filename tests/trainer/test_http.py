"""The trainer's llm-d-compatible API in process (httpx over ASGI)."""

from __future__ import annotations

import io
import json
import tarfile
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from slocast.store import SampleStore, sqlite_url
from slocast.trainer.http import create_trainer_app
from slocast.trainer.service import SERVED_BOUND, Trainer, TrainerConfig
from tests.conftest import json_with
from tests.trainer.test_service import synthetic_llm_rows

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def entries(n: int, seed: int = 0) -> list[dict[str, Any]]:
    out = []
    for i, row in enumerate(synthetic_llm_rows(n, seed)):
        ttft = row.pop("actual_ttft_ms")
        # The router sends TTFT samples (tpot 0) and TPOT samples (ttft 0).
        if i % 2 == 0:
            out.append(row | {"actual_ttft_ms": ttft, "actual_tpot_ms": 0.0})
        else:
            out.append(row | {"actual_ttft_ms": 0.0, "actual_tpot_ms": 20 + ttft / 100})
    return out


@pytest.fixture
def setup(tmp_path: Path) -> tuple[httpx.AsyncClient, Trainer]:
    store = SampleStore(sqlite_url(tmp_path / "home"))
    trainer = Trainer(
        store, TrainerConfig(home=tmp_path / "home", min_samples=100, n_estimators=80)
    )
    app = create_trainer_app(trainer, max_batch=1000)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    return client, trainer


async def test_ingest_is_acknowledged_with_llmd_message_and_split_by_target(setup: Any) -> None:
    client, trainer = setup
    response = await client.post("/add_training_data_bulk", json={"entries": entries(400)})
    assert response.status_code == 202
    assert response.json() == {"message": "Accepted 400 training samples."}
    status = (await client.get("/data/status")).json()
    ttft = status["training_data"]["ttft_samples"] + status["test_data"]["ttft_samples"]
    tpot = status["training_data"]["tpot_samples"] + status["test_data"]["tpot_samples"]
    assert ttft == 200 and tpot == 200
    assert status["test_data"]["total_samples"] > 0
    assert trainer.store.counts("llm-ttft").train == status["training_data"]["ttft_samples"]
    ensemble = status["ensemble"]
    assert ensemble["ensemble_mode"] is False and ensemble["ensemble_active"] is False
    split = ensemble["ttft_noqueue_samples"] + ensemble["ttft_queued_samples"]
    assert split == status["training_data"]["ttft_samples"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"actual_ttft_ms": -1.0}, "actual_ttft_ms"),
        ({"prefix_cache_score": 2.0}, "prefix_cache_score"),
        ({"num_request_waiting": "many"}, "num_request_waiting"),
        ({"served_ttft_ms": -5.0}, "served_ttft_ms"),
        ({"served_tpot_ms": "fast"}, "served_tpot_ms"),
        # Past what the store keeps exactly: named as sent, by the entry's index in the request
        # (the store's own check counts the rows of one target).
        ({"actual_tpot_ms": 1e300}, "actual_tpot_ms"),
        ({"served_ttft_ms": 1e300}, "served_ttft_ms"),
    ],
)
async def test_invalid_rows_reject_the_batch_and_store_nothing(
    setup: Any, change: dict[str, Any], field: str
) -> None:
    client, trainer = setup
    batch = entries(10)
    batch[7] |= change
    response = await client.post("/add_training_data_bulk", json={"entries": batch})
    assert response.status_code == 422
    assert ["body", "entries", 7, field] in [e["loc"] for e in response.json()["detail"]]
    assert trainer.store.counts("llm-ttft").train == 0


async def test_a_served_bound_is_kept_with_its_own_target_only(setup: Any) -> None:
    """llm-d rows may say what the prediction server answered (``served_ttft_ms`` and
    ``served_tpot_ms``); each domain's row keeps its own as the served bound."""
    client, trainer = setup
    ttft, tpot = entries(2)
    ttft |= {"served_ttft_ms": 900.0, "served_tpot_ms": 30.0}
    response = await client.post("/add_training_data_bulk", json={"entries": [ttft, tpot]})
    assert response.status_code == 202
    [stored_ttft] = [*trainer.store.rows("llm-ttft", False), *trainer.store.rows("llm-ttft", True)]
    [stored_tpot] = [*trainer.store.rows("llm-tpot", False), *trainer.store.rows("llm-tpot", True)]
    assert stored_ttft[SERVED_BOUND] == 900.0
    assert SERVED_BOUND not in stored_tpot  # that row's own request carried none
    assert "served_ttft_ms" not in stored_ttft and "served_tpot_ms" not in stored_ttft
    # Which bounds the rolling coverage judged: the one served where the row said, else the
    # live model's (none yet here: outcomes reach a model once one is trained).
    trainer.ingest("llm-ttft", synthetic_llm_rows(300, seed=3))
    assert trainer.retrain("llm-ttft").accepted
    await client.post("/add_training_data_bulk", json={"entries": [ttft, ttft, tpot]})
    metrics = (await client.get("/metrics")).text
    assert 'slocast_trainer_outcomes_total{domain="llm-ttft",judged_by="served"} 2' in metrics
    assert 'slocast_trainer_outcomes_total{domain="llm-ttft",judged_by="live"} 0' in metrics


async def test_a_body_past_the_cap_is_refused_and_nothing_stored(tmp_path: Path) -> None:
    trainer = Trainer(SampleStore(sqlite_url(tmp_path)), TrainerConfig(home=tmp_path))
    app = create_trainer_app(trainer, max_body_bytes=10_000)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        big = await client.post("/add_training_data_bulk", json={"entries": entries(200)})
        assert big.status_code == 413 and "exceeds 10000" in big.json()["detail"]
        ok = await client.post("/add_training_data_bulk", json={"entries": entries(10)})
        assert ok.status_code == 202
    assert sum(trainer.store.counts(d).train + trainer.store.counts(d).test
               for d in ("llm-ttft", "llm-tpot")) == 10  # fmt: skip


async def test_oversized_batch_and_bad_flush_flag(setup: Any) -> None:
    client, _ = setup
    assert (
        await client.post("/add_training_data_bulk", json={"entries": entries(1001)})
    ).status_code == 413
    assert (await client.post("/flush", json={"flush_training_data": "yes"})).status_code == 422


async def test_flush_and_models_lifecycle(setup: Any) -> None:
    client, trainer = setup
    accepted = await client.post("/add_training_data_bulk", json={"entries": entries(1000)})
    assert accepted.status_code == 202
    listed = (await client.get("/models/list")).json()
    assert set(listed["models"]) == {"ttft", "tpot", "ttft_gated", "tpot_gated"}
    assert listed["models"]["ttft"]["exists"] is False
    assert (await client.get("/model/ttft/info")).status_code == 404
    assert (await client.get("/model/export")).status_code == 503
    trainer.run_once(["llm-ttft", "llm-tpot"])
    assert (await client.get("/model/ttft_gated/info")).status_code == 404  # no ensemble
    info = (await client.get("/model/ttft/info")).json()
    assert info["exists"] and info["size_bytes"] > 0 and info["model_type"] == "lightgbm"
    text = await client.get("/model/ttft/lgb/txt")
    assert text.status_code == 200 and text.text.startswith("tree")
    importances = (await client.get("/model/ttft/lgb/importances")).json()
    assert "input_token_length" in importances
    metrics = (await client.get("/metrics")).text
    for line in (
        'model_type{type="lightgbm"} 1',
        "model_quantile{} 0.9",
        "ensemble_active{} 0",
        "ensemble_mode{} 0",
    ):
        assert line in metrics
    assert 'training_samples_count{model="ttft",queue_bucket=' in metrics
    assert "ttft_aci_level{}" in metrics
    bundles = (await client.get("/v1/bundles")).json()["bundles"]
    version = bundles["llm-ttft"]["current"]
    # When the current bundle was written: what prediction servers' own series are held to.
    manifest = (await client.get(f"/v1/bundles/llm-ttft/{version}")).json()
    written = datetime.fromisoformat(manifest["created_at"]).timestamp()
    assert (
        f'slocast_trainer_bundle_created_timestamp_seconds{{domain="llm-ttft"}} {written:.3f}'
        in metrics
    )
    archive = (await client.get(f"/v1/bundles/llm-ttft/{version}/download")).content
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert "manifest.json" in tar.getnames()
    gating = (await client.get("/v1/bundles/gating")).json()["decisions"]
    assert {d["domain"] for d in gating} == {"llm-ttft", "llm-tpot"}
    assert (await client.get("/model/ttft/xgb/json")).status_code == 404  # model_type lightgbm
    joblib_file = await client.get("/model/ttft/download")
    assert joblib_file.headers["content-disposition"] == 'attachment; filename="ttft.joblib"'
    import joblib

    booster = joblib.load(io.BytesIO(joblib_file.content))
    assert booster.num_trees() > 0
    exported = await client.get("/model/export")
    assert exported.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(exported.content)) as tar:
        assert set(tar.getnames()) == {"metadata.json", "ttft.joblib", "tpot.joblib"}
        metadata = json.loads(tar.extractfile("metadata.json").read())  # type: ignore[union-attr]
        assert metadata["quantile_alpha"] == 0.9 and tar.getmember("ttft.joblib").mtime > 0
    predicted = (await client.post("/predict", json=entries(1)[0])).json()
    assert predicted["ttft_ms"] > 0 and predicted["tpot_ms"] > 0
    flushed = (await client.post("/flush", content=b"")).json()
    assert flushed["success"] and flushed["ttft_training_samples_flushed"] > 0
    assert flushed["message"].startswith("Successfully flushed: ")
    assert (await client.get("/model/ttft/info")).status_code == 200  # flush keeps the models


async def test_generic_samples_route(setup: Any) -> None:
    client, trainer = setup
    rows = [{"cpus": 1, "memory": 1e9, "rchar": 1e6, "process": "ALIGN", "peak_rss": 5e8}] * 3
    response = await client.post("/v1/task-memory/samples", json={"items": rows})
    assert response.status_code == 202 and response.json()["accepted"] == 3
    # Stored, and the answer says whether this trainer retrains the domain (--domain).
    assert response.json()["retrained"] is False
    trainer.start(["task-memory"])
    try:
        again = await client.post("/v1/task-memory/samples", json={"items": rows[:1]})
    finally:
        trainer.stop()
    assert again.json() == {"accepted": 1, "domain": "task-memory", "retrained": True}
    bad = await client.post("/v1/task-memory/samples", json={"items": [{"cpus": 1}]})
    assert bad.status_code == 422 and "peak_rss" in str(bad.json())
    headers = {"content-type": "application/json"}
    for field, literal in [("memory", '"4 GB"'), ("cpus", "-2"), ("rchar", "1e400"),
                           ("time", "NaN"), ("note", "1180591620717411303424"),
                           ("served_upper", "-1"), ("served_upper", '"large"'),
                           ("note", "[1e400]"), ("note", '{"a": 1}'), ("time", "false"),
                           ("known_at", '"2026-12-08"')]:  # fmt: skip
        body = json_with({"items": [rows[0], rows[0] | {field: "@"}]}, literal)
        refused = await client.post("/v1/task-memory/samples", content=body, headers=headers)
        assert refused.status_code == 422, (field, refused.text)
        assert ["body", 1, field] in [e["loc"] for e in refused.json()["detail"]], refused.text
    assert trainer.store.counts("task-memory").train + trainer.store.counts("task-memory").test == 4
    # A missing input is a gap the model learns around, not an error.
    nan_kv = json_with({"items": [entries(1)[0] | {"kv_cache_percentage": "@"}]}, "NaN")
    gap = await client.post("/v1/llm-ttft/samples", content=nan_kv, headers=headers)
    assert gap.status_code == 202, gap.text


async def test_a_watch_on_the_bundle_listing_answers_when_a_bundle_is_published(
    setup: Any,
) -> None:
    import asyncio
    import time

    client, trainer = setup
    first = await client.get("/v1/bundles")
    etag = first.headers["etag"]
    started = time.monotonic()
    unchanged = await client.get(
        "/v1/bundles", params={"wait_s": 0.3}, headers={"If-None-Match": etag}
    )
    assert unchanged.status_code == 304 and time.monotonic() - started >= 0.3
    assert unchanged.headers["etag"] == etag
    assert (await client.post("/add_training_data_bulk", json={"entries": entries(400)})).is_success

    async def publish_soon() -> None:
        await asyncio.sleep(0.2)
        await asyncio.to_thread(trainer.run_once, ["llm-ttft", "llm-tpot"])

    started = time.monotonic()
    watch = client.get("/v1/bundles", params={"wait_s": 60}, headers={"If-None-Match": etag})
    changed, _ = await asyncio.gather(watch, publish_soon())
    assert changed.status_code == 200 and time.monotonic() - started < 30
    assert changed.headers["etag"] != etag
    assert changed.json()["bundles"]["llm-ttft"]["current"] == trainer.registry.current("llm-ttft")
    for bad in ("-1", "soon", "301"):
        refused = await client.get("/v1/bundles", params={"wait_s": bad})
        assert refused.status_code == 422 and "wait_s" in str(refused.json()["detail"])


async def test_a_watch_is_held_no_longer_than_the_trainer_allows(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stopping trainer waits for its open watches: each is held a few seconds at most,
    and the client watches again."""
    import time

    import slocast.trainer.http as trainer_http

    monkeypatch.setattr(trainer_http, "WATCH_HOLD_S", 0.3)
    client, _ = setup
    etag = (await client.get("/v1/bundles")).headers["etag"]
    started = time.monotonic()
    held = await client.get("/v1/bundles", params={"wait_s": 60}, headers={"If-None-Match": etag})
    assert held.status_code == 304 and 0.3 <= time.monotonic() - started < 10


async def test_a_slow_download_does_not_hold_up_ingest(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Packing a large bundle, exporting models or counting a big store used to run on the
    event loop, so every acknowledgement the router waited for waited on them too."""
    import time

    import anyio

    import slocast.trainer.http as trainer_http

    client, trainer = setup
    assert (await client.post("/add_training_data_bulk", json={"entries": entries(400)})).is_success
    trainer.run_once(["llm-ttft", "llm-tpot"])
    version = (await client.get("/v1/bundles")).json()["bundles"]["llm-ttft"]["current"]
    pack = trainer_http.pack_bundle

    def slow_pack(path: Path) -> bytes:
        time.sleep(1.0)  # a bundle of large compiled libraries, gzipped
        return pack(path)

    monkeypatch.setattr(trainer_http, "pack_bundle", slow_pack)
    finished: list[str] = []

    async def download() -> None:
        response = await client.get(f"/v1/bundles/llm-ttft/{version}/download")
        assert response.status_code == 200
        finished.append("download")

    async def ingest() -> None:
        await anyio.sleep(0.2)  # the download is under way
        response = await client.post("/add_training_data_bulk", json={"entries": entries(60, 1)})
        assert response.status_code == 202
        finished.append("ingest")

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(download)
        tasks.start_soon(ingest)
    assert finished == ["ingest", "download"]
