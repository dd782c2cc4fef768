"""New bundles landing on a running prediction server, pulled from a trainer or re-read from
its bundle directories on /reload (in process, httpx over ASGI)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

import slocast.serving.sync as sync_module
from slocast.artifacts import ModelBundle, load_bundle
from slocast.serving import DataPlane, HTTPConfig, create_app
from slocast.serving.sync import TrainerSync
from slocast.store import SampleStore, sqlite_url
from slocast.trainer.http import create_trainer_app
from slocast.trainer.service import Trainer, TrainerConfig
from tests.trainer.test_http import entries

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def asgi_client(app: object, base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)  # type: ignore[arg-type]


@pytest.fixture
def trainer(tmp_path: Path) -> Trainer:
    home = tmp_path / "trainer"
    config = TrainerConfig(home=home, min_samples=100, n_estimators=30)
    return Trainer(SampleStore(sqlite_url(home)), config)


async def publish_first_models(trainer: Trainer, to_trainer: httpx.AsyncClient) -> Any:
    """Post the router's first rows, retrain once; the trainer's listing of what it published."""
    posted = await to_trainer.post("/add_training_data_bulk", json={"entries": entries(400)})
    assert posted.status_code == 202
    trainer.run_once(["llm-ttft", "llm-tpot"])
    return (await to_trainer.get("/v1/bundles")).json()


async def test_predictions_are_served_while_a_new_bundle_is_unpacked(
    trainer: Trainer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unpacking and hashing a downloaded bundle ran on the server's event loop, so every
    prediction waited for it; the bundle now lands while the old model keeps answering."""
    plane = DataPlane()
    puller = TrainerSync("http://trainer", tmp_path / "cache", plane)
    extract = sync_module.extract_bundle

    unpacking = threading.Event()
    finished: list[str] = []

    def slow_extract(data: bytes, target: Path) -> None:
        unpacking.set()
        time.sleep(1.0)  # megabytes of compiled libraries to gunzip and hash
        extract(data, target)
        finished.append("unpacked")

    monkeypatch.setattr(sync_module, "extract_bundle", slow_extract)
    async with (
        asgi_client(create_trainer_app(trainer), "http://trainer") as to_trainer,
        asgi_client(create_app(plane, HTTPConfig()), "http://server") as to_server,
    ):
        listing = await publish_first_models(trainer, to_trainer)

        async def pull() -> None:
            result = await puller._apply(to_trainer, listing, None)
            assert result.synced and result.loaded, result.message
            finished.append("sync")

        async def predict() -> None:
            while not unpacking.is_set():
                await anyio.sleep(0.01)
            answer = await to_server.post("/predict", json=entries(1)[0])
            assert answer.status_code == 200 and answer.json()["ttft_ms"] > 0
            finished.append("predict")

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(pull)
            tasks.start_soon(predict)
    assert finished == ["predict", "unpacked", "unpacked", "sync"]  # TTFT and TPOT
    served = {d: m.version for d, m in plane.models.items()}
    assert served == {d: info["current"] for d, info in listing["bundles"].items()}


async def test_predictions_are_served_while_reload_reads_the_bundle_directories(
    llmd_bundle_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve http --bundle DIR``'s /reload verified and loaded bundles on the event loop."""
    import slocast.cli.serve as serve_cli

    dirs = list(llmd_bundle_dirs.values())
    plane = DataPlane([load_bundle(d) for d in dirs])
    app = create_app(plane, HTTPConfig(), serve_cli._local_reloader(plane, dirs, threads=1))
    reading = threading.Event()
    finished: list[str] = []

    def slow_load(path: Path, **options: Any) -> ModelBundle:
        reading.set()
        time.sleep(1.0)  # hashing every file of a bundle with large compiled libraries
        bundle = load_bundle(path, **options)
        finished.append("loaded")
        return bundle

    monkeypatch.setattr(serve_cli, "load_bundle", slow_load)
    async with asgi_client(app, "http://server") as client:

        async def reload() -> None:
            answer = (await client.post("/reload")).json()
            assert answer["synced"] and answer["message"] == "already current", answer
            finished.append("reload")

        async def predict() -> None:
            while not reading.is_set():
                await anyio.sleep(0.01)
            answer = await client.post("/predict", json=entries(1)[0])
            assert answer.status_code == 200
            finished.append("predict")

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(reload)
            tasks.start_soon(predict)
    assert finished == ["predict", "loaded", "loaded", "reload"]


async def test_a_corrupt_download_is_refused_and_the_watch_goes_on(
    trainer: Trainer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A download that is not a bundle archive was not caught: it ended the background watch
    for good (the server then served its old bundles without a word) and /reload was a 500."""
    import slocast.trainer.http as trainer_http

    plane = DataPlane()
    puller = TrainerSync("http://trainer", tmp_path / "cache", plane)
    monkeypatch.setattr(trainer_http, "pack_bundle", lambda path: b"<html>bad gateway</html>")
    async with asgi_client(create_trainer_app(trainer), "http://trainer") as to_trainer:
        listing = await publish_first_models(trainer, to_trainer)
        result = await puller._apply(to_trainer, listing, None)
    assert not result.synced and "cannot be unpacked" in result.message
    assert plane.models["llm-ttft"].cold_start  # what it served before
    refused = plane.metrics.registry.get_sample_value("slocast_bundles_refused_total")
    assert refused == 1

    rounds = 0

    async def failing_round(wait_s: float = 0.0) -> Any:
        nonlocal rounds
        rounds += 1
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(puller, "sync", failing_round)
    with anyio.move_on_after(0.5):
        await puller.run(interval_s=0.1)
    assert rounds >= 3  # the watch kept going, a round every interval
    assert "model sync round failed" in caplog.text


async def test_a_version_another_worker_unpacked_first_is_taken(
    trainer: Trainer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve http --workers N` shares one download cache: the worker that lost the race to
    rename its copy into place failed its round ('Directory not empty')."""
    cache = tmp_path / "cache"
    plane = DataPlane()
    puller = TrainerSync("http://trainer", cache, plane)
    extract = sync_module.extract_bundle

    def another_worker_too(data: bytes, staging: Path) -> None:
        extract(data, staging)
        domain = staging.parent.name
        # Meanwhile the server's other worker put the same version in place.
        extract(data, cache / domain / listing["bundles"][domain]["current"])

    async with asgi_client(create_trainer_app(trainer), "http://trainer") as to_trainer:
        listing = await publish_first_models(trainer, to_trainer)
        monkeypatch.setattr(sync_module, "extract_bundle", another_worker_too)
        result = await puller._apply(to_trainer, listing, None)
    assert result.synced and result.loaded, result.message
    current = {domain: info["current"] for domain, info in listing["bundles"].items()}
    assert {domain: model.version for domain, model in plane.models.items()} == current
