"""The Redis cache against a real redis-server started by the fixture."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from slocast.artifacts import ModelBundle
from slocast.serving import DataPlane, RedisCache
from tests.conftest import free_port, wait_for_port
from tests.serving.test_http import trace_rows

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="redis-server binary not installed (apt-get install redis-server; .ci/run does)",
)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_replicas_share_predictions_through_redis(
    redis_url: str, llmd_bundles: list[ModelBundle]
) -> None:
    first, second = (
        DataPlane(llmd_bundles, RedisCache(redis_url)),
        DataPlane(llmd_bundles, RedisCache(redis_url)),
    )
    rows = trace_rows(5)
    a = first.predict("llm-ttft", rows)
    b = second.predict("llm-ttft", rows)  # another replica: served from the shared cache
    assert [p.upper for p in a] == [p.upper for p in b]
    registry = second.metrics.registry
    assert registry.get_sample_value("slocast_cache_hits_total", {"domain": "llm-ttft"}) == 5


def test_round_trip_and_misses(redis_url: str) -> None:
    cache = RedisCache(redis_url)
    cache.put_many({"k1": (1.0, 2.0)})
    assert cache.get_many(["k1", "absent"]) == [(1.0, 2.0), None]
