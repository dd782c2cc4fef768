"""The learning path: ingest -> retrain -> gate -> publish -> serve, on synthetic and real rows."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from slocast.artifacts import load_bundle
from slocast.artifacts.compiled import can_compile, compile_engine
from slocast.calibration.forecaster import CalibratedForecaster
from slocast.serving import DataPlane
from slocast.store import SampleStore, sqlite_url
from slocast.trainer import service
from slocast.trainer.service import SERVED_BOUND, Trainer, TrainerConfig
from tests.conftest import LLMD


def synthetic_llm_rows(n: int, seed: int) -> list[dict[str, float]]:
    """llm-d's own learning check: TTFT linear in the features plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        row = {
            "kv_cache_percentage": float(rng.uniform(0, 1)),
            "input_token_length": int(rng.integers(10, 4000)),
            "num_request_waiting": int(rng.integers(0, 20)),
            "num_request_running": int(rng.integers(0, 30)),
            "num_tokens_generated": 0,
            "prefix_cache_score": float(rng.uniform(0, 1)),
        }
        mean = (
            50 + 0.2 * row["input_token_length"] + 30 * row["num_request_waiting"]
            + 100 * row["kv_cache_percentage"]
        )  # fmt: skip
        # Latencies are positive: the rare draw below 1 ms is clipped (0.0001% of rows).
        row["actual_ttft_ms"] = max(1.0, mean + float(rng.normal(0, 40)))
        rows.append(row)
    return rows


@pytest.fixture
def trainer(tmp_path: Path) -> Trainer:
    store = SampleStore(sqlite_url(tmp_path / "home"))
    config = TrainerConfig(home=tmp_path / "home", min_samples=100, n_estimators=150, threads=1)
    return Trainer(store, config)


def test_a_trainer_replaces_its_cold_start_model_and_keeps_the_promise(trainer: Trainer) -> None:
    assert trainer.current_bundle("llm-ttft") is None
    trainer.ingest("llm-ttft", synthetic_llm_rows(3000, seed=1))
    [decision] = trainer.run_once(["llm-ttft"])
    assert decision.accepted and decision.reason == "first model for this domain"
    bundle = trainer.current_bundle("llm-ttft")
    assert bundle is not None and bundle.version == decision.version
    # The fits ran on the threads configured (LightGBM writes its parameters into the model).
    models = [f.read_text() for f in bundle.path.glob("*.txt")]
    assert models and all("[num_threads: 1]" in m for m in models)
    dataplane = DataPlane([bundle])
    assert not dataplane.models["llm-ttft"].cold_start
    fresh = synthetic_llm_rows(2000, seed=2)
    bounds = [p.upper for p in dataplane.predict("llm-ttft", fresh)]
    coverage = np.mean([r["actual_ttft_ms"] <= b for r, b in zip(fresh, bounds, strict=True)])
    assert coverage == pytest.approx(0.9, abs=0.05)
    probe = fresh[0] | {"num_request_waiting": 5}
    short, long = (
        dataplane.predict("llm-ttft", [probe | {"input_token_length": n}])[0].upper
        for n in (200, 3500)
    )
    assert long > short


def test_a_new_model_replays_its_latest_outcomes_as_they_were_ingested(
    trainer: Trainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fit ends by replaying its newest rows into ACI; the rows one ingest call stored come
    back as one round, as they came live (ACI weighs a round by the root of its size: cut
    finer, the replay moved the level further than live updates would have)."""
    rows = synthetic_llm_rows(3000, seed=5)
    for start in range(0, len(rows), 30):  # a router posting 30 outcomes at a time
        trainer.ingest("llm-ttft", rows[start : start + 30])
    rounds: list[set[float]] = []
    observe = CalibratedForecaster.observe

    def spy(self: CalibratedForecaster, done: Any, served: Any) -> None:
        rounds.append(set(done["_received_at"]))
        observe(self, done, served)

    monkeypatch.setattr(CalibratedForecaster, "observe", spy)
    assert trainer.retrain("llm-ttft").accepted
    assert len(rounds) >= 3 and all(len(calls) == 1 for calls in rounds)
    assert all(a != b for a, b in itertools.pairwise(rounds))  # no call split


def chatbot_ttft_rows() -> list[dict[str, Any]]:
    """The llm-d H200 chatbot trace's TTFT rows, in order: a load ramp, where calibration moves."""
    with gzip.open(LLMD / "chatbot-synthetic-h200.jsonl.gz", "rt") as handle:
        rows = [json.loads(line) for line in handle]
    return [r for r in rows if r["actual_ttft_ms"] > 0]


@pytest.mark.parametrize("during", ["fit_on_history", "save_bundle"])
def test_outcomes_that_arrive_during_a_retrain_reach_the_model_it_publishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, during: str
) -> None:
    """A model fitted on the rows stored when its retrain began follows the outcomes that came
    while it was fitted or written before it serves, as the live model it replaces did: it ends
    in the calibration it would have had had they come just after it was published."""
    rows = chatbot_ttft_rows()
    history, late, fresh = rows[:900], rows[900:1020], rows[1020:1200]

    def retrained(home: Path, arrive_during_retrain: bool) -> CalibratedForecaster:
        trainer = Trainer(
            SampleStore(sqlite_url(home)),
            TrainerConfig(home=home, min_samples=100, n_estimators=60, threads=1),
        )
        for start in range(0, len(history), 60):  # the router's one-second batches
            trainer.ingest("llm-ttft", history[start : start + 60])
        step = getattr(service, during)

        def arriving(*args: Any, **kwargs: Any) -> Any:
            for start in range(0, len(late), 60):
                trainer.ingest("llm-ttft", late[start : start + 60])
            return step(*args, **kwargs)

        with monkeypatch.context() as patch:
            if arrive_during_retrain:
                patch.setattr(service, during, arriving)
            assert trainer.retrain("llm-ttft").accepted
        if not arrive_during_retrain:
            for start in range(0, len(late), 60):
                trainer.ingest("llm-ttft", late[start : start + 60])
        return trainer.live["llm-ttft"]

    during_retrain = retrained(tmp_path / "during", True)
    after = retrained(tmp_path / "after", False)
    assert during_retrain.aci is not None and after.aci is not None
    assert during_retrain.aci.observed == after.aci.observed
    assert during_retrain.aci.level == pytest.approx(after.aci.level)
    frame = pd.DataFrame(fresh)
    np.testing.assert_allclose(
        during_retrain.predict(frame).upper, after.predict(frame).upper, rtol=1e-9
    )


def test_coverage_and_aci_follow_the_bounds_jobs_were_served(tmp_path: Path) -> None:
    """Rows that say which bound their job was served are judged by it: a server that kept
    serving bounds far under the outcomes shows as misses (coverage alarm, ACI raising the
    level), though the trainer's own live model would have covered the same jobs."""

    def after(home: Path, served_share: float | None) -> Trainer:
        trainer = Trainer(
            SampleStore(sqlite_url(home)),
            TrainerConfig(home=home, min_samples=100, n_estimators=60, threads=1),
        )
        trainer.ingest("llm-ttft", synthetic_llm_rows(1000, seed=21))
        assert trainer.retrain("llm-ttft").accepted
        later = synthetic_llm_rows(300, seed=22)
        if served_share is not None:
            later = [r | {SERVED_BOUND: served_share * r["actual_ttft_ms"]} for r in later]
        for start in range(0, len(later), 30):
            trainer.ingest("llm-ttft", later[start : start + 30])
        return trainer

    own = after(tmp_path / "own", None)
    starved = after(tmp_path / "starved", 0.5)  # every job was served half what it took
    assert not own.coverage_alarm("llm-ttft")
    assert starved.coverage_alarm("llm-ttft") and not any(starved.recent_hits["llm-ttft"])
    own_aci, starved_aci = own.live["llm-ttft"].aci, starved.live["llm-ttft"].aci
    assert own_aci is not None and starved_aci is not None
    assert starved_aci.level > own_aci.level
    assert starved_aci.observed_coverage is not None and own_aci.observed_coverage is not None
    assert starved_aci.observed_coverage < own_aci.observed_coverage - 0.1
    generous = after(tmp_path / "generous", 10.0)  # served bounds 10x the outcomes
    generous_aci = generous.live["llm-ttft"].aci
    assert generous_aci is not None and generous_aci.level < own_aci.level


def test_no_retrain_without_new_rows_and_gating_is_recorded(trainer: Trainer) -> None:
    trainer.ingest("llm-ttft", synthetic_llm_rows(1000, seed=3))
    assert len(trainer.run_once(["llm-ttft"])) == 1
    assert trainer.run_once(["llm-ttft"]) == []  # nothing new: no retrain, no new bundle
    trainer.ingest("llm-ttft", synthetic_llm_rows(500, seed=4))
    [second] = trainer.run_once(["llm-ttft"])
    assert second.coverage_current is not None and second.coverage_new is not None
    assert second.reason  # accepted or rejected, always with its reason
    current = trainer.current_bundle("llm-ttft")
    assert current is not None
    first = load_bundle(trainer.registry.path("llm-ttft", trainer.decisions[0].version))
    trees = {n: h for n, h in current.manifest["files"].items() if n.startswith("model_")}
    first_trees = {n: h for n, h in first.manifest["files"].items() if n.startswith("model_")}
    # Rejected: the first model's trees keep serving (their calibration may be republished
    # with the new outcomes, under a new version). Accepted: new trees.
    assert (trees == first_trees) is not second.accepted


def test_a_restarted_trainer_does_not_retrain_without_new_rows(trainer: Trainer) -> None:
    trainer.ingest("llm-ttft", synthetic_llm_rows(600, seed=7))
    [first] = trainer.run_once(["llm-ttft"])
    restarted = Trainer(trainer.store, trainer.config)
    assert not restarted.due("llm-ttft")  # the published model learned every stored row
    assert restarted.run_once(["llm-ttft"]) == []
    assert restarted.current_bundle("llm-ttft").version == first.version  # type: ignore[union-attr]
    restarted.ingest("llm-ttft", synthetic_llm_rows(200, seed=8))
    assert len(restarted.run_once(["llm-ttft"])) == 1


def test_too_few_rows_keep_the_cold_start(trainer: Trainer) -> None:
    trainer.ingest("llm-ttft", synthetic_llm_rows(50, seed=5))
    assert trainer.run_once(["llm-ttft"]) == []
    assert trainer.current_bundle("llm-ttft") is None


def test_a_failing_retrain_does_not_stall_the_other_domains(
    trainer: Trainer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """One domain whose fit raised ended run_once, so the domains after it never retrained."""
    rows = synthetic_llm_rows(600, seed=6)
    trainer.ingest("llm-ttft", rows)
    trainer.ingest(
        "llm-tpot", [r | {"actual_tpot_ms": 20 + r["actual_ttft_ms"] / 100} for r in rows]
    )
    retrain = trainer.retrain

    def failing(domain: str) -> Any:
        if domain == "llm-ttft":
            raise RuntimeError("the fit ran out of memory")
        return retrain(domain)

    monkeypatch.setattr(trainer, "retrain", failing)
    [decision] = trainer.run_once(["llm-ttft", "llm-tpot"])
    assert decision.domain == "llm-tpot" and decision.accepted
    assert "retrain of llm-ttft failed" in caplog.text
    monkeypatch.setattr(trainer, "retrain", retrain)
    [retried] = trainer.run_once(["llm-ttft", "llm-tpot"])  # still due: it never trained
    assert retried.domain == "llm-ttft" and retried.accepted


@pytest.mark.parametrize("fails", ["latest_id", "rows"])
def test_a_retrain_that_fails_stops_recording_outcomes_for_it(
    trainer: Trainer, monkeypatch: pytest.MonkeyPatch, fails: str
) -> None:
    """A retrain records the outcomes that arrive during its fit; one that fails (the store
    down when it reads, before or after the record opened) must not leave it recording."""
    trainer.ingest("llm-ttft", synthetic_llm_rows(300, seed=9))
    assert trainer.retrain("llm-ttft").accepted

    def down(*args: Any, **kwargs: Any) -> Any:
        raise OSError("the store is down")

    with monkeypatch.context() as patch:
        patch.setattr(trainer.store, fails, down)
        with pytest.raises(OSError):
            trainer.retrain("llm-ttft")
    trainer.ingest("llm-ttft", synthetic_llm_rows(30, seed=10))
    assert trainer._since_fit == {}


def test_ensemble_mode_publishes_queue_gated_models(tmp_path: Path) -> None:
    store = SampleStore(sqlite_url(tmp_path / "home"))
    config = TrainerConfig(
        home=tmp_path / "home", min_samples=100, n_estimators=80, ensemble_mode=True
    )
    trainer = Trainer(store, config)

    def rows(n: int, seed: int) -> list[dict[str, float]]:
        out = synthetic_llm_rows(n, seed)
        for row in out[::4]:  # a quarter arrive to an empty queue
            row["actual_ttft_ms"] = max(
                1.0, row["actual_ttft_ms"] - 30 * row["num_request_waiting"]
            )
            row["num_request_waiting"] = 0
        return out

    trainer.ingest("llm-ttft", rows(3000, seed=3))
    [decision] = trainer.run_once(["llm-ttft"])
    bundle = trainer.current_bundle("llm-ttft")
    assert decision.accepted and bundle is not None
    assert bundle.manifest["family"] == "gated"
    upper = bundle.forecaster.base.upper_model
    assert getattr(upper, "active", False)  # both sides had enough rows for their own model
    import anyio
    import httpx

    from slocast.trainer.http import create_trainer_app

    async def scrape() -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]:
        transport = httpx.ASGITransport(app=create_trainer_app(trainer))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return (
                (await client.get("/metrics")).text,
                (await client.get("/data/status")).json(),
                (await client.get("/models/list")).json(),
                (await client.get("/model/ttft_gated/info")).json(),
            )

    metrics, status, listed, gated_info = anyio.run(scrape)
    assert listed["models"]["ttft_gated"]["exists"] and not listed["models"]["tpot_gated"]["exists"]
    assert gated_info["exists"] and gated_info["size_bytes"] > 0
    assert "ensemble_mode{} 1" in metrics and "ensemble_active{} 1" in metrics
    assert status["ensemble"]["ensemble_active"] is True  # type: ignore[index]
    fresh = rows(2000, seed=4)
    bounds = [p.upper for p in DataPlane([bundle]).predict("llm-ttft", fresh)]
    coverage = np.mean([r["actual_ttft_ms"] <= b for r, b in zip(fresh, bounds, strict=True)])
    assert coverage == pytest.approx(0.9, abs=0.05)


def test_a_coverage_drop_triggers_an_early_retrain(tmp_path: Path) -> None:
    import time

    store = SampleStore(sqlite_url(tmp_path / "home"))
    config = TrainerConfig(
        home=tmp_path / "home", min_samples=100, n_estimators=60, retrain_interval_s=3600.0
    )
    trainer = Trainer(store, config)
    trainer.ingest("llm-ttft", synthetic_llm_rows(1000, seed=5))
    [first] = trainer.run_once(["llm-ttft"])
    assert first.accepted
    trainer.start(["llm-ttft"])  # next scheduled retrain: in an hour
    try:
        slower = synthetic_llm_rows(400, seed=6)
        for row in slower:
            row["actual_ttft_ms"] *= 4.0  # the fleet got 4x slower: bounds stop covering
        trainer.ingest("llm-ttft", slower)
        deadline = time.monotonic() + 60
        while len(trainer.decisions) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        trainer.stop()
    assert len(trainer.decisions) == 2
    assert trainer.early_retrains["llm-ttft"] == 1


def test_calibration_follows_outcomes_between_slow_retrains(tmp_path: Path) -> None:
    """A retrain an hour away does not hold the live calibration back: outcomes are
    republished with the same trees at the recalibration pace."""
    import time

    trainer = Trainer(
        SampleStore(sqlite_url(tmp_path / "home")),
        TrainerConfig(home=tmp_path / "home", min_samples=100, n_estimators=40, threads=1,
                      retrain_interval_s=3600.0, recalibrate_interval_s=0.1),
    )  # fmt: skip
    trainer.ingest("llm-ttft", synthetic_llm_rows(600, seed=11))
    [first] = trainer.run_once(["llm-ttft"])
    trainer.start(["llm-ttft"])
    try:
        trainer.ingest("llm-ttft", synthetic_llm_rows(100, seed=12))
        deadline = time.monotonic() + 30
        while trainer.registry.current("llm-ttft") == first.version:
            assert time.monotonic() < deadline, "the calibration was not republished"
            time.sleep(0.05)
    finally:
        trainer.stop()
    current = trainer.current_bundle("llm-ttft")
    assert current is not None and current.manifest["provenance"]["recalibrated"]
    assert len(trainer.decisions) == 1  # the same trees: no retrain ran


def test_ingest_is_acknowledged_while_a_retrain_holds_the_models(tmp_path: Path) -> None:
    """A retrain holds the live models for its whole fit; ingest stores and answers without
    waiting, and the retrain thread feeds the queued outcomes to the models afterwards."""
    import threading

    trainer = Trainer(
        SampleStore(sqlite_url(tmp_path / "home")),
        TrainerConfig(home=tmp_path / "home", min_samples=100, n_estimators=40),
    )
    trainer.ingest("llm-ttft", synthetic_llm_rows(600, seed=7))
    trainer.run_once(["llm-ttft"])
    held, release = threading.Event(), threading.Event()

    def long_retrain() -> None:
        with trainer._lock:  # what retrain() holds while it fits
            held.set()
            release.wait(30)

    holder = threading.Thread(target=long_retrain)
    holder.start()
    held.wait(5)
    answered = threading.Thread(
        target=trainer.ingest, args=("llm-ttft", synthetic_llm_rows(200, seed=8))
    )
    answered.start()
    answered.join(10)
    try:
        assert not answered.is_alive(), "ingest waited for the retrain"
        assert trainer.store.counts("llm-ttft").train + trainer.store.counts("llm-ttft").test == 800
        assert len(trainer.recent_hits.get("llm-ttft", ())) == 0  # not applied yet: queued
    finally:
        release.set()
        holder.join(10)
    trainer._apply_outcomes()  # what the retrain thread does when its round ends
    assert len(trainer.recent_hits["llm-ttft"]) == 200
    assert "llm-ttft" in trainer.recalibrate_pending


@pytest.mark.skipif(not can_compile("lightgbm"), reason="needs gcc and the compile extra")
def test_compiled_bundles_keep_their_libraries_across_recalibrations(tmp_path: Path) -> None:
    trainer = Trainer(
        SampleStore(sqlite_url(tmp_path / "home")),
        TrainerConfig(
            home=tmp_path / "home", min_samples=100, n_estimators=40, compile_models=True
        ),
    )
    trainer.ingest("llm-ttft", synthetic_llm_rows(600, seed=9))
    trainer.run_once(["llm-ttft"])
    first = trainer.current_bundle("llm-ttft")
    engine = compile_engine("lightgbm")
    assert first is not None and first.engine == engine is not None
    trainer.ingest("llm-ttft", synthetic_llm_rows(100, seed=10))
    version = trainer.recalibrate("llm-ttft")
    again = trainer.current_bundle("llm-ttft")
    assert version is not None and again is not None and again.version == version != first.version
    assert again.engine == engine
    for library in first.manifest["compiled"].values():
        assert again.manifest["files"][library] == first.manifest["files"][library]
