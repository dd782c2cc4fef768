"""Model sync: a prediction server pulls new bundles from a slocast trainer and swaps them in.

Every ``interval`` seconds (and on ``POST /reload``) the server asks the trainer which bundle is
current per domain; a new one is downloaded, unpacked, verified (hashes, feature schema) and
swapped in atomically. A bundle that fails verification is refused and counted; the previous
one keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from pathlib import Path

import httpx

from slocast.artifacts import load_bundle
from slocast.artifacts.registry import extract_bundle
from slocast.errors import SlocastError
from slocast.serving.dataplane import DataPlane
from slocast.serving.http import ReloadResult

__all__ = ["TrainerSync"]

log = logging.getLogger(__name__)


class TrainerSync:
    def __init__(
        self,
        url: str,
        cache_dir: Path,
        dataplane: DataPlane,
        timeout_s: float = 30.0,
        threads: int = 0,
    ) -> None:
        self.url = url.rstrip("/")
        self.cache_dir = cache_dir
        self.dataplane = dataplane
        self.timeout_s = timeout_s
        self.threads = threads
        self._lock = asyncio.Lock()

    async def _fetch(self, client: httpx.AsyncClient, domain: str, version: str) -> Path:
        target = self.cache_dir / domain / version
        if (target / "manifest.json").is_file():
            return target
        response = await client.get(f"{self.url}/v1/bundles/{domain}/{version}/download")
        response.raise_for_status()
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
        try:
            extract_bundle(response.content, staging)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    async def sync(self) -> ReloadResult:
        """One round: fetch and swap every domain whose current version changed."""
        async with self._lock:
            try:
                async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                    listing = (await client.get(f"{self.url}/v1/bundles")).raise_for_status().json()
                    swapped = False
                    for domain, info in listing["bundles"].items():
                        version = info.get("current")
                        served = self.dataplane.models.get(domain)
                        if not version or (served is not None and served.version == version):
                            continue
                        path = await self._fetch(client, domain, version)
                        try:
                            bundle = await asyncio.to_thread(load_bundle, path, True, self.threads)
                        except SlocastError as exc:
                            self.dataplane.metrics.bundles_refused.inc()
                            shutil.rmtree(path, ignore_errors=True)
                            return ReloadResult(
                                False, swapped, f"refused {domain} {version}: {exc}"
                            )
                        swapped |= self.dataplane.swap(bundle)
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                return ReloadResult(False, False, f"trainer at {self.url} unavailable: {exc}")
        return ReloadResult(True, swapped, "new bundles loaded" if swapped else "already current")

    async def run(self, interval_s: float) -> None:
        """Poll forever (cancelled when the server stops)."""
        while True:
            result = await self.sync()
            if not result.synced:
                log.warning("model sync: %s", result.message)
            await asyncio.sleep(interval_s)
