"""Bundle registry on disk: ``ROOT/{domain}/{version}/`` plus a ``CURRENT`` pointer per domain.

Publishing writes the bundle first, then replaces ``CURRENT`` atomically, so a reader sees the
old or the new version, never a half-written one. Old versions beyond ``keep`` are pruned.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tarfile
import zlib
from pathlib import Path
from typing import Any

from slocast.artifacts.bundle import MANIFEST
from slocast.errors import BundleError

__all__ = ["BundleRegistry", "extract_bundle", "pack_bundle"]


class BundleRegistry:
    def __init__(self, root: Path, keep: int = 5) -> None:
        self.root = root
        self.keep = keep
        root.mkdir(parents=True, exist_ok=True)

    def domains(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if (p / "CURRENT").is_file())

    def current(self, domain: str) -> str | None:
        pointer = self.root / domain / "CURRENT"
        return pointer.read_text().strip() if pointer.is_file() else None

    def path(self, domain: str, version: str) -> Path:
        path = self.root / domain / version
        if "/" in version or ".." in version or not (path / MANIFEST).is_file():
            raise BundleError(f"no bundle {version!r} for domain {domain!r}", field="version")
        return path

    def manifest_bytes(self, domain: str, version: str) -> bytes:
        return (self.path(domain, version) / MANIFEST).read_bytes()

    def manifest(self, domain: str, version: str) -> dict[str, Any]:
        manifest: dict[str, Any] = json.loads(self.manifest_bytes(domain, version))
        return manifest

    def staging(self, domain: str, version_hint: str) -> Path:
        """Where to write a new bundle before publishing it."""
        (self.root / domain).mkdir(parents=True, exist_ok=True)
        return self.root / domain / f".new-{version_hint}"

    def versions(self, domain: str) -> list[str]:
        folder = self.root / domain
        if not folder.is_dir():
            return []
        found = [
            p for p in folder.iterdir() if (p / MANIFEST).is_file() and not p.name.startswith(".")
        ]
        return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime)]

    def publish(self, domain: str, written: Path, version: str) -> Path:
        """Move a written bundle into place and point CURRENT at it; prune old versions."""
        final = self.root / domain / version
        if (final / MANIFEST).is_file():
            # A version names its files' hashes: the same fit published again (the same rows
            # refitted within a second) is the bundle already here.
            shutil.rmtree(written, ignore_errors=True)
        else:
            os.replace(written, final)
        pointer = self.root / domain / "CURRENT"
        tmp = pointer.with_suffix(".tmp")
        tmp.write_text(version)
        os.replace(tmp, pointer)
        for old in self.versions(domain)[: -self.keep] if self.keep > 0 else []:
            if old != version:
                shutil.rmtree(self.root / domain / old, ignore_errors=True)
        return final


def pack_bundle(path: Path) -> bytes:
    """A bundle directory as tar.gz bytes (for download by prediction servers)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for file in sorted(path.iterdir()):
            tar.add(file, arcname=file.name)
    return buffer.getvalue()


def extract_bundle(data: bytes, out: Path) -> Path:
    """Unpack a downloaded bundle (plain files only: no links, no paths outside ``out``).

    An archive that is not a whole gzipped tar (cut short, corrupted) is a BundleError, as a
    bundle whose hashes do not match is: the caller refuses it and keeps what it serves.
    """
    out.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar.getmembers():
                if not member.isfile() or "/" in member.name or member.name.startswith("."):
                    raise BundleError(f"unexpected entry {member.name!r} in bundle archive")
            if hasattr(tarfile, "data_filter"):
                tar.extractall(out, filter="data")
            else:  # Python before 3.11.4 has no extraction filters; the checks above still hold
                tar.extractall(out)
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise BundleError(f"bundle archive cannot be unpacked ({len(data)} bytes): {exc}") from exc
    return out
