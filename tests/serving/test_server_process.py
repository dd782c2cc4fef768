"""A real `slocast serve http` process on a free port: swap under load, refused bundles."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.serving.conftest import train_llmd_bundle
from tests.serving.test_http import trace_rows

pytestmark = pytest.mark.slow


def point(link: Path, target: Path) -> None:
    """Atomically repoint a symlink (how a deployment publishes a new bundle)."""
    tmp = link.with_name(link.name + ".tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


@pytest.fixture
def server(tmp_path: Path, llmd_bundle_dirs: dict[str, Path]) -> Iterator[tuple[str, Path]]:
    link = tmp_path / "ttft-current"
    link.symlink_to(llmd_bundle_dirs["llm-ttft"])
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "slocast", "serve", "http", "--bundle", str(link),
         "--bundle", str(llmd_bundle_dirs["llm-tpot"]), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError(
                f"server did not become ready: {(tmp_path / 'server.log').read_text()}"
            )
        yield url, link
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def ttft_version(url: str) -> str:
    models = httpx.get(f"{url}/v1/models").json()["models"]
    return next(m["version"] for m in models if m["domain"] == "llm-ttft")


def test_swap_under_load_fails_no_request(server: tuple[str, Path], tmp_path: Path) -> None:
    url, link = server
    before = ttft_version(url)
    new_bundle = train_llmd_bundle("llmd-ttft", tmp_path / "ttft-v2", n_estimators=40)
    body = {"requests": trace_rows(20)}
    stop = time.monotonic() + 3.0

    def hammer(_: int) -> list[int]:
        codes = []
        with httpx.Client(base_url=url, timeout=10) as client:
            while time.monotonic() < stop:
                codes.append(client.post("/predict/bulk/strict", json=body).status_code)
        return codes

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(hammer, i) for i in range(4)]
        time.sleep(1.0)
        point(link, new_bundle)
        reload = httpx.post(f"{url}/reload").json()
        codes = [c for f in futures for c in f.result()]
    assert reload["synced"] and reload["loaded"]
    assert ttft_version(url) != before
    assert len(codes) > 20 and set(codes) == {200}


def test_corrupt_bundle_is_refused_and_the_old_one_keeps_serving(
    server: tuple[str, Path], tmp_path: Path, llmd_bundle_dirs: dict[str, Path]
) -> None:
    url, link = server
    before = ttft_version(url)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(llmd_bundle_dirs["llm-ttft"], corrupt)
    with (corrupt / "model_upper.txt").open("a") as handle:
        handle.write("\n# tampered\n")
    point(link, corrupt)
    reload = httpx.post(f"{url}/reload").json()
    assert reload["synced"] is False and "sha256" in reload["message"]
    assert ttft_version(url) == before
    assert httpx.post(f"{url}/predict", json=trace_rows(1)[0]).status_code == 200
    assert "slocast_bundles_refused_total 1.0" in httpx.get(f"{url}/metrics").text
