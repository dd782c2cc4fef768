"""The Redis cache against a real redis-server started by the fixture."""

from __future__ import annotations

import shutil
import subprocess
import time
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


def start_redis(port: int, directory: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for_port(port)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = start_redis(port, tmp_path)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc)


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


def test_predictions_outlive_a_redis_outage(
    tmp_path: Path, llmd_bundles: list[ModelBundle]
) -> None:
    """The shared cache going away costs lookups, never a prediction; it is used again once
    it is back (it used to fail every prediction while down)."""
    port = free_port()
    server = start_redis(port, tmp_path)
    plane = DataPlane(llmd_bundles, RedisCache(f"redis://127.0.0.1:{port}/0", retry_after_s=0.2))
    registry = plane.metrics.registry
    rows = trace_rows(5)

    def hits() -> float:
        return registry.get_sample_value("slocast_cache_hits_total", {"domain": "llm-ttft"}) or 0

    try:
        expected = [p.upper for p in plane.predict("llm-ttft", rows)]
        stop(server)
        assert [p.upper for p in plane.predict("llm-ttft", rows)] == expected
        assert [p.upper for p in plane.predict("llm-ttft", rows)] == expected  # while resting
        assert registry.get_sample_value("slocast_cache_errors_total") >= 2
        server = start_redis(port, tmp_path)
        time.sleep(0.3)  # past the rest
        plane.predict("llm-ttft", rows)  # a miss: the restarted server holds nothing
        before = hits()
        assert [p.upper for p in plane.predict("llm-ttft", rows)] == expected
        assert hits() == before + 5
    finally:
        stop(server)
