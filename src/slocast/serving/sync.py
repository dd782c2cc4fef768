"""Model sync: a prediction server pulls new bundles from a slocast trainer and swaps them in.

The server watches the trainer's listing of current bundles (and asks again on ``POST
/reload``): each request carries the ETag of the listing it last applied and waits up to
``interval`` seconds for a publish to change it, so a new bundle is picked up as it is
published, not at the next poll. A trainer that does not wait is polled every ``interval``.
A new bundle is downloaded, unpacked, verified (hashes, feature schema) and swapped in
atomically. A bundle that fails verification is refused and counted; the previous one keeps
serving.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from slocast.artifacts import load_bundle
from slocast.artifacts.bundle import MANIFEST
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
        # The ETag of the last listing applied in full (None: none yet, or a round failed).
        self._etag: str | None = None

    def _cached(self, domain: str, version: str) -> Path:
        """Where a downloaded version is unpacked (shared by the workers of one server)."""
        return self.cache_dir / domain / version

    async def _fetch(self, client: httpx.AsyncClient, domain: str, version: str) -> Path:
        target = self._cached(domain, version)
        if (target / MANIFEST).is_file():
            return target
        response = await client.get(f"{self.url}/v1/bundles/{domain}/{version}/download")
        response.raise_for_status()
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
        try:
            # Unpacking and hashing megabytes of libraries: not on the loop that serves.
            await asyncio.to_thread(extract_bundle, response.content, staging)
            try:
                os.replace(staging, target)
            except OSError:
                # The workers of one server share this cache: another may have unpacked the
                # same version first. Theirs is the same files (load_bundle checks them).
                if not (target / MANIFEST).is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    async def sync(self, wait_s: float = 0.0) -> ReloadResult:
        """One round: fetch and swap every domain whose current version changed. With
        ``wait_s``, first wait (at most that long) for the trainer to publish something new;
        the wait holds no lock, so ``POST /reload`` meanwhile answers at once."""
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s + wait_s) as client:
                watch = {"If-None-Match": self._etag} if wait_s and self._etag else {}
                response = await client.get(
                    f"{self.url}/v1/bundles", params={"wait_s": wait_s}, headers=watch
                )
                if response.status_code == 304:
                    return ReloadResult(True, False, "already current")
                listing = response.raise_for_status().json()
                async with self._lock:
                    return await self._apply(client, listing, response.headers.get("etag"))
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            return ReloadResult(False, False, f"trainer at {self.url} unavailable: {exc}")

    async def _apply(
        self, client: httpx.AsyncClient, listing: dict[str, Any], etag: str | None
    ) -> ReloadResult:
        self._etag = None  # until every domain below is applied: the next round asks anew
        swapped = False
        for domain, info in listing["bundles"].items():
            version = info.get("current")
            served = self.dataplane.models.get(domain)
            if not version or (served is not None and served.version == version):
                continue
            try:
                path = await self._fetch(client, domain, version)
                bundle = await asyncio.to_thread(load_bundle, path, True, self.threads)
            except SlocastError as exc:
                self.dataplane.metrics.bundles_refused.inc()
                shutil.rmtree(self._cached(domain, version), ignore_errors=True)
                return ReloadResult(False, swapped, f"refused {domain} {version}: {exc}")
            swapped |= self.dataplane.swap(bundle)
        self._etag = etag
        return ReloadResult(True, swapped, "new bundles loaded" if swapped else "already current")

    async def run(self, interval_s: float) -> None:
        """Watch forever (cancelled when the server stops). Each round waits in the trainer
        until it publishes (or ``interval_s`` passes) and the next starts at once; after a
        failed round, or against a trainer that cannot watch (its listing has no ETag), the
        rest of ``interval_s`` passes first."""
        while True:
            started = time.monotonic()
            try:
                result = await self.sync(wait_s=interval_s)
                if not result.synced:
                    log.warning("model sync: %s", result.message)
            except Exception:
                # A round that fails in a way not foreseen (a full disk, say) must not end the
                # watch for the server's lifetime: it would serve stale bundles, silently.
                log.exception("model sync round failed")
                result = ReloadResult(False, False, "sync round failed")
            if not result.synced or self._etag is None:
                await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - started)))
