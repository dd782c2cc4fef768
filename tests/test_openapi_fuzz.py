"""Every route of the prediction server and of the trainer, driven with requests generated from
their own OpenAPI documents (schemathesis): inputs the document allows and inputs it refuses.

No route may answer 5xx to anything a client sends; the strict generic routes must accept every
body their document allows and refuse every body it does not (so the document is their
contract, not an approximation of it). llm-d's routes keep llm-d's lax pydantic rules (``true``
for a count is 1), so only the first holds for them.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
)

from slocast.artifacts import load_bundle
from slocast.serving import DataPlane, HTTPConfig, create_app
from slocast.store import SampleStore, sqlite_url
from slocast.trainer.http import create_trainer_app
from slocast.trainer.service import Trainer, TrainerConfig
from tests.serving.conftest import train_llmd_bundle
from tests.trainer.test_http import entries

pytestmark = pytest.mark.slow

Check = Callable[..., Any]
# Requests per operation and kind; raise it for a deeper search than CI affords.
EXAMPLES = int(os.environ.get("SLOCAST_FUZZ_EXAMPLES", "25"))


def drive(
    app: Any,
    mode: GenerationMode,
    checks: Callable[[str], Sequence[Check]],
    path_values: Mapping[str, str] | None = None,
) -> dict[str, Counter[int]]:
    """Send every operation of ``app``'s document ``EXAMPLES`` generated requests of ``mode``
    (path parameters fixed to ``path_values`` where named), each answer held to
    ``checks(path)``; returns the statuses seen per operation."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    seen: dict[str, Counter[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        names = {p.name for p in operation.path_parameters}
        fixed = {k: v for k, v in (path_values or {}).items() if k in names} or None
        label = f"{operation.method.upper()} {operation.path}"
        seen[label] = drive_one(operation, mode, list(checks(operation.path)), fixed)
    return seen


def drive_one(
    operation: Any, mode: GenerationMode, checks: list[Check], fixed: dict[str, str] | None
) -> Counter[int]:
    statuses: Counter[int] = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=fixed))
    def run(case: Any) -> None:
        response = case.call()
        statuses[response.status_code] += 1
        case.validate_response(response, checks=checks)

    try:
        run()
    except Unsatisfiable:
        # Nothing a client sends that the document refuses (no input, or only strings).
        if mode is not GenerationMode.NEGATIVE:
            raise
    return statuses


@pytest.fixture(scope="module")
def server_app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("fuzz-bundles")
    dataplane = DataPlane()
    for kind in ("llmd-ttft", "llmd-tpot"):
        dataplane.swap(load_bundle(train_llmd_bundle(kind, root / kind, n_estimators=20)))
    return create_app(dataplane, HTTPConfig(max_batch=1000))


@pytest.fixture(scope="module")
def trainer_app(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, str]]:
    """A trainer with a published model per llm-d domain; the path values naming them."""
    home = tmp_path_factory.mktemp("fuzz-trainer")
    trainer = Trainer(SampleStore(sqlite_url(home)),
                      TrainerConfig(home=home, min_samples=100, n_estimators=20))  # fmt: skip
    app = create_trainer_app(trainer, max_batch=1000)

    async def ingest() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            posted = await client.post("/add_training_data_bulk", json={"entries": entries(600)})
            assert posted.status_code == 202

    asyncio.run(ingest())
    assert all(d.accepted for d in trainer.run_once(["llm-ttft", "llm-tpot"]))
    version = trainer.registry.current("llm-ttft")
    assert version is not None
    return app, {"name": "ttft", "domain": "llm-ttft", "version": version}


def strict_generic(path: str) -> bool:
    return path.startswith("/v1/") and path.endswith(("/predict", "/samples"))


def allowed_checks(path: str) -> list[Check]:
    return [not_a_server_error] + ([positive_data_acceptance] if strict_generic(path) else [])


def refused_checks(path: str) -> list[Check]:
    return [not_a_server_error] + ([negative_data_rejection] if strict_generic(path) else [])


def test_the_prediction_servers_document_is_its_contract(server_app: Any) -> None:
    allowed = drive(
        server_app,
        GenerationMode.POSITIVE,
        lambda path: [not_a_server_error, positive_data_acceptance],
    )
    refused = drive(server_app, GenerationMode.NEGATIVE, refused_checks)
    # The generic route is documented once per loaded domain, each with its own items.
    assert {"POST /v1/llm-ttft/predict", "POST /v1/llm-tpot/predict"} <= set(allowed)
    assert allowed["POST /v1/llm-ttft/predict"][200] == EXAMPLES
    assert refused["POST /v1/llm-ttft/predict"][422] > 0


def test_the_trainers_document_is_its_contract(trainer_app: tuple[Any, dict[str, str]]) -> None:
    app, known = trainer_app
    refused = drive(app, GenerationMode.NEGATIVE, refused_checks)
    assert refused["POST /add_training_data_bulk"][422] > 0
    drive(app, GenerationMode.POSITIVE, allowed_checks)  # names generated at random
    allowed = drive(app, GenerationMode.POSITIVE, allowed_checks, known)
    assert allowed["GET /model/{name}/info"][200] == allowed["GET /model/{name}/info"].total()
    assert allowed["POST /add_training_data_bulk"][202] > 0
    # Generic ingest is documented per built-in domain, each with its own fields.
    assert allowed["POST /v1/hpc-runtime/samples"][202] == EXAMPLES
    assert refused["POST /v1/task-memory/samples"][422] > 0
