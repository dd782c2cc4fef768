"""Stores under test: embedded SQLite, and a real PostgreSQL server started by the fixture."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from slocast.store import SampleStore, sqlite_url
from tests.conftest import free_port, wait_for_port


def _pg_binary(name: str) -> str | None:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None
    )
    return found


def postgres_available() -> bool:
    return _pg_binary("initdb") is not None and _pg_binary("postgres") is not None


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL server on a free loopback port; yields its URL."""
    initdb, postgres = _pg_binary("initdb"), _pg_binary("postgres")
    assert initdb and postgres, "PostgreSQL binaries not installed"
    # Not under pytest's tmp dir (mode 0700, owned by us): the server user must reach it.
    root = Path(tempfile.mkdtemp(prefix="slocast-pg-"))
    # PostgreSQL refuses to run as root: run it as the postgres user when we are root.
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    data = root / "data"
    subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "slocast", "--no-sync"],
                   check=True, capture_output=True)  # fmt: skip
    port = free_port()
    proc = subprocess.Popen(
        [*as_user, postgres, "-D", str(data), "-p", str(port), "-k", str(root), "-h", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port)
        time.sleep(0.3)
        yield f"postgresql://slocast@127.0.0.1:{port}/postgres"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if not postgres_available():
        pytest.skip("PostgreSQL binaries not installed (apt-get install postgresql; .ci/run does)")
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "home")
        return
    url: str = request.getfixturevalue("postgres_url")
    yield url
    store = SampleStore(url)
    for domain in ("llm-ttft", "llm-tpot", "task-memory"):
        store.flush(domain)
    store.close()
