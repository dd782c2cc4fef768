"""The container image itself: every entry point starts as the non-root user and answers.

Runs against an image already built, when asked (``make image test-image``): building needs
the base image from a registry, so neither is part of ``make test``. The engine is docker, or
podman when docker has no daemon. Set in the environment:

- ``SLOCAST_IMAGE``: the image to test (unset: these tests skip);
- ``SLOCAST_ENGINE``: the engine command (e.g. ``podman --runtime runc``);
- ``SLOCAST_ENGINE_RUN_ARGS``: extra ``run`` flags (e.g. ``--ulimit nofile=1024:4096``).

Containers use the host network, so the checks reach them on 127.0.0.1 like the compose stack's
clients would; registries' PostgreSQL and Redis images are not needed (SQLite, no cache).
"""

from __future__ import annotations

import gzip
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from slocast.artifacts import load_bundle
from tests.conftest import LLMD, free_port

pytestmark = pytest.mark.slow
IMAGE = os.environ.get("SLOCAST_IMAGE", "")
RUN_ARGS = shlex.split(os.environ.get("SLOCAST_ENGINE_RUN_ARGS", ""))
if not IMAGE:
    pytest.skip("SLOCAST_IMAGE not set (make image test-image)", allow_module_level=True)


def _engine() -> list[str] | None:
    if os.environ.get("SLOCAST_ENGINE"):
        return shlex.split(os.environ["SLOCAST_ENGINE"])
    for name in ("docker", "podman"):
        if (
            shutil.which(name)
            and subprocess.run([name, "info"], capture_output=True).returncode == 0
        ):
            return [name]
    return None


ENGINE = _engine()
if ENGINE is None:
    pytest.skip("no container engine (docker daemon or podman) here", allow_module_level=True)
assert ENGINE is not None
if subprocess.run([*ENGINE, "image", "inspect", IMAGE], capture_output=True).returncode != 0:
    pytest.skip(f"image {IMAGE} not built here (make image)", allow_module_level=True)


@contextmanager
def container(*args: str, volumes: dict[Path, str] | None = None) -> Iterator[str]:
    """Run the image detached with ``args``; yields its name, removes it afterwards."""
    name = f"slocast-test-{uuid.uuid4().hex[:8]}"
    mounts = [f"--volume={src}:{dst}:ro" for src, dst in (volumes or {}).items()]
    command = [*ENGINE, "run", "--detach", "--network=host", f"--name={name}", *RUN_ARGS, *mounts,
               IMAGE, *args]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run([*ENGINE, "rm", "--force", name], capture_output=True)


def logs(name: str) -> str:
    run = subprocess.run([*ENGINE, "logs", name], capture_output=True, text=True)
    return run.stdout + run.stderr


def wait_for(name: str, check: Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{name} not ready:\n{logs(name)[-3000:]}")


def rows() -> list[dict[str, Any]]:
    with gzip.open(LLMD / "chatbot-synthetic-h200.jsonl.gz", "rt") as handle:
        return [json.loads(line) for line in handle]


def features(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("actual_")}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, str]:
    """TTFT and TPOT bundles trained (and compiled) on the host, readable by uid 10001."""
    out = tmp_path_factory.mktemp("bundles")
    mounts = {}
    for target in ("ttft", "tpot"):
        subprocess.run([sys.executable, "-m", "slocast", "train", "--dataset",
                        f"llmd-{target}:{LLMD / 'chatbot-synthetic-h200.jsonl.gz'}",
                        "--out", str(out / target)], check=True, capture_output=True)  # fmt: skip
        mounts[out / target] = f"/bundles/{target}"
    for path in [out, *out.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return mounts


def test_runs_as_the_unprivileged_user() -> None:
    run = subprocess.run([*ENGINE, "run", "--rm", *RUN_ARGS, "--entrypoint=id", IMAGE, "-u"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert run.stdout.strip() == "10001"


def test_prediction_server_serves_mounted_bundles(bundles: dict[Path, str]) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with container("serve", "http", "--host", "127.0.0.1", "--port", str(port),
                   "--bundle", "/bundles/ttft", "--bundle", "/bundles/tpot",
                   volumes=bundles) as name:  # fmt: skip
        wait_for(name, lambda: httpx.get(f"{url}/readyz").status_code == 200)
        answer = httpx.post(f"{url}/predict", json=features(rows()[100]))
        assert answer.status_code == 200, answer.text
        assert answer.json()["ttft_ms"] > 0 and answer.json()["tpot_ms"] > 0
        bad = httpx.post(f"{url}/predict", json={"input_token_length": "many"})
        assert bad.status_code == 422
        assert "slocast_requests_total" in httpx.get(f"{url}/metrics").text
        # Trees compiled on the host run in the image as they do here (same engine).
        served = {m["domain"]: m["engine"] for m in httpx.get(f"{url}/v1/models").json()["models"]}
        here = {load_bundle(path).spec.name: load_bundle(path).engine for path in bundles}
        assert served == here


def test_trainer_learns_and_a_server_syncs_from_it() -> None:
    trainer_port, server_port = free_port(), free_port()
    trainer, server = f"http://127.0.0.1:{trainer_port}", f"http://127.0.0.1:{server_port}"
    with (
        container("trainer", "--host", "127.0.0.1", "--port", str(trainer_port)) as trainer_name,
        container("serve", "http", "--host", "127.0.0.1", "--port", str(server_port),
                  "--training-server-url", trainer) as server_name,
    ):  # fmt: skip
        wait_for(trainer_name, lambda: httpx.get(f"{trainer}/readyz").status_code == 200)
        posted = httpx.post(f"{trainer}/add_training_data_bulk", json={"entries": rows()})
        assert posted.status_code == 202, posted.text

        def synced() -> bool:
            httpx.post(f"{server}/reload", timeout=30)
            status = httpx.get(f"{server}/status").json()
            return bool(
                status["models_exist"]["ttft_model"] and status["models_exist"]["tpot_model"]
            )

        wait_for(server_name, synced, seconds=180)
        answer = httpx.post(f"{server}/predict", json=features(rows()[100]))
        assert answer.status_code == 200 and answer.json()["ttft_ms"] > 0


def test_grpc_server_reports_serving(bundles: dict[Path, str]) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    port = free_port()
    with container("serve", "grpc", "--host", "127.0.0.1", "--port", str(port),
                   "--bundle", "/bundles/ttft", volumes=bundles) as name:  # fmt: skip

        def serving() -> bool:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                except grpc.RpcError:
                    return False
                return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

        wait_for(name, serving)


def test_dashboard_starts(bundles: dict[Path, str]) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with container("dashboard", "--host", "127.0.0.1", "--port", str(port),
                   "--bundle", "/bundles/ttft", volumes=bundles) as name:  # fmt: skip
        wait_for(name, lambda: httpx.get(f"{url}/_stcore/health").text == "ok", seconds=90)
