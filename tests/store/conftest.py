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
    return all(_pg_binary(name) is not None for name in ("initdb", "postgres", "pg_ctl"))


class PostgresServer:
    """A throwaway PostgreSQL cluster on a free loopback port that can be stopped and started
    again on the same data and port, as an outage and its recovery look to a client."""

    def __init__(self) -> None:
        initdb, self.binary = _pg_binary("initdb"), _pg_binary("postgres")
        assert initdb and self.binary, "PostgreSQL binaries not installed"
        # Not under pytest's tmp dir (mode 0700, owned by us): the server user must reach it.
        self.root = Path(tempfile.mkdtemp(prefix="slocast-pg-"))
        # PostgreSQL refuses to run as root: run it as the postgres user when we are root.
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres")
        self.data = self.root / "data"
        subprocess.run([*self.as_user, initdb, "-D", str(self.data), "-A", "trust", "-U", "slocast",
                        "--no-sync"], check=True, capture_output=True)  # fmt: skip
        self.port = free_port()
        self.url = f"postgresql://slocast@127.0.0.1:{self.port}/postgres"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [*self.as_user, str(self.binary), "-D", str(self.data), "-p", str(self.port),
             "-k", str(self.root), "-h", "127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port)
        time.sleep(0.3)

    def stop(self) -> None:
        """A fast shutdown that waits until the data directory is released (a plain SIGTERM is
        PostgreSQL's smart shutdown, which waits for every client to leave first)."""
        if self.proc is not None:
            subprocess.run([*self.as_user, str(_pg_binary("pg_ctl")), "stop", "-D", str(self.data),
                            "-m", "fast", "-w"], check=True, capture_output=True)  # fmt: skip
            self.proc.wait(timeout=20)
            self.proc = None


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A started :class:`PostgresServer`, removed with its data afterwards."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if not postgres_available():
        pytest.skip("PostgreSQL binaries not installed (apt-get install postgresql; .ci/run does)")
    with postgres_server() as server:
        yield server.url


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
