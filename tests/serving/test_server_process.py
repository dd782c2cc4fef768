"""A real `slocast serve http` process on a free port: swap under load, refused bundles."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
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


@contextmanager
def running_server(tmp_path: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`slocast serve http ARGS` on a free port, ready; its URL and process."""
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "slocast", "serve", "http", *args,
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError(
                f"server did not become ready: {(tmp_path / 'server.log').read_text()}"
            )
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.fixture
def server(tmp_path: Path, llmd_bundle_dirs: dict[str, Path]) -> Iterator[tuple[str, Path]]:
    link = tmp_path / "ttft-current"
    link.symlink_to(llmd_bundle_dirs["llm-ttft"])
    bundles = ["--bundle", str(link), "--bundle", str(llmd_bundle_dirs["llm-tpot"])]
    with running_server(tmp_path, *bundles) as (url, _):
        yield url, link


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads worker processes in /proc")
def test_workers_share_the_port_and_answer_alike(
    tmp_path: Path, llmd_bundle_dirs: dict[str, Path]
) -> None:
    bundles = [f"--bundle={llmd_bundle_dirs[d]}" for d in ("llm-ttft", "llm-tpot")]
    with running_server(tmp_path, *bundles, "--workers", "2") as (url, proc):
        row = trace_rows(1)[0]
        answers = set()
        for _ in range(30):  # a fresh connection each: the kernel spreads them over workers
            response = httpx.post(f"{url}/predict", json=row)
            assert response.status_code == 200
            answers.add((response.json()["ttft_ms"], response.json()["tpot_ms"]))
        workers = _children(proc.pid)
    assert len(answers) == 1
    # uvicorn's supervisor runs the two workers (and may hold a resource tracker besides).
    assert len(workers) >= 2


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
    after = ttft_version(url)
    assert after != before
    assert len(codes) > 20 and set(codes) == {200}
    # The swap is logged as one JSON object with its facts as fields (SLOCAST_LOG_FORMAT=json).
    events = [json.loads(line) for line in server_log(tmp_path) if line.startswith("{")]
    swap = [e for e in events if e.get("version") == after]
    assert swap and swap[0]["domain"] == "llm-ttft" and swap[0]["level"] == "INFO"
    assert swap[0]["logger"] == "slocast.serving.dataplane" and after in swap[0]["message"]


def server_log(tmp_path: Path) -> list[str]:
    return (tmp_path / "server.log").read_text().splitlines()


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


def test_access_lines_are_written_where_the_log_level_shows_them(
    tmp_path: Path, llmd_bundle_dirs: dict[str, Path]
) -> None:
    """Below INFO uvicorn is told not to build access lines at all (they cost a one-row
    prediction about 5 % of its server time); at INFO it still writes them."""
    bundles = [f"--bundle={llmd_bundle_dirs[d]}" for d in ("llm-ttft", "llm-tpot")]
    with running_server(tmp_path, *bundles, "--log-level", "info") as (url, _):
        assert httpx.post(f"{url}/predict", json=trace_rows(1)[0]).status_code == 200
    lines = [json.loads(line) for line in (tmp_path / "server.log").read_text().splitlines()[1:]]
    access = [line["message"] for line in lines if line["logger"] == "uvicorn.access"]
    # The readiness polls' lines, then the prediction's.
    assert access and access[-1].endswith('"POST /predict HTTP/1.1" 200'), lines
