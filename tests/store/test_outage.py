"""A real PostgreSQL going away under the trainer and coming back: retryable 503s, not ready
while it is away, nothing acknowledged lost."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from slocast.store import SampleStore
from slocast.trainer.http import create_trainer_app
from slocast.trainer.service import Trainer, TrainerConfig
from tests.store.conftest import postgres_available, postgres_server
from tests.trainer.test_http import entries

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        not postgres_available(),
        reason="PostgreSQL binaries not installed (apt-get install postgresql; .ci/run does)",
    ),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def stored(client: httpx.AsyncClient) -> int:
    status = (await client.get("/data/status")).json()
    return int(status["training_data"]["total_samples"] + status["test_data"]["total_samples"])


async def test_a_store_outage_is_a_retryable_503_and_the_trainer_is_not_ready(
    tmp_path: Path,
) -> None:
    """It was a 500 and /readyz kept saying ready, so a router neither retried nor moved on."""
    with postgres_server() as server:
        trainer = Trainer(SampleStore(server.url), TrainerConfig(home=tmp_path, min_samples=10**6))
        app = create_trainer_app(trainer)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/readyz")).status_code == 200
            posted = await client.post("/add_training_data_bulk", json={"entries": entries(50)})
            assert posted.status_code == 202
            assert await stored(client) == 50

            # The server stops: the next batch cannot be made durable, so it is not acknowledged.
            server.stop()
            refused = await client.post("/add_training_data_bulk", json={"entries": entries(50, 1)})
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "1"
            assert "sample store unavailable" in refused.json()["detail"]
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert (await client.get("/healthz")).status_code == 200  # alive: do not restart it

            # It comes back on the same data: ready again, the acknowledged rows are all there,
            # the refused batch is not, and the router's retry of it is taken.
            server.start()
            assert (await client.get("/readyz")).status_code == 200
            assert await stored(client) == 50
            retried = await client.post("/add_training_data_bulk", json={"entries": entries(50, 1)})
            assert retried.status_code == 202, retried.text
            assert await stored(client) == 100
        trainer.store.close()
