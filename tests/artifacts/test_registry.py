"""The bundle registry (publishing, versions) and bundle archives as prediction servers
download them: round trip, and hostile or broken archives."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from slocast.artifacts.registry import BundleRegistry, extract_bundle, pack_bundle
from slocast.errors import BundleError


def _bundle(tmp_path: Path) -> Path:
    source = tmp_path / "bundle"
    source.mkdir()
    (source / "manifest.json").write_text('{"version": "v1"}')
    (source / "model_upper.txt").write_text("tree")
    return source


@pytest.mark.parametrize("filters", [True, False])
def test_pack_and_extract_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, filters: bool
) -> None:
    if not filters:  # Python before 3.11.4 (e.g. Debian bookworm's 3.11.2) has no data_filter
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    out = extract_bundle(pack_bundle(_bundle(tmp_path)), tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model_upper.txt"]
    assert (out / "model_upper.txt").read_text() == "tree"


@pytest.mark.parametrize("name", ["../escape.txt", "sub/file.txt", ".hidden", "link"])
def test_archives_with_paths_links_or_hidden_files_are_refused(tmp_path: Path, name: str) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        member = tarfile.TarInfo(name)
        if name == "link":
            member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(member)
        else:
            member.size = 1
            tar.addfile(member, io.BytesIO(b"x"))
    with pytest.raises(BundleError, match="unexpected entry"):
        extract_bundle(buffer.getvalue(), tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


@pytest.mark.parametrize("cut", ["not gzip", "truncated", "gzip of garbage"])
def test_an_archive_that_cannot_be_unpacked_is_a_bundle_error(tmp_path: Path, cut: str) -> None:
    import gzip

    whole = pack_bundle(_bundle(tmp_path))
    data = {
        "not gzip": b"<html>502 Bad Gateway</html>",
        "truncated": whole[: len(whole) // 2],
        "gzip of garbage": gzip.compress(b"\x00garbage" * 100),
    }[cut]
    with pytest.raises(BundleError, match="cannot be unpacked"):
        extract_bundle(data, tmp_path / "out")


def test_publishing_a_version_again_keeps_the_one_in_place(tmp_path: Path) -> None:
    """The same fit written twice within a second has the same version (its files' hash): the
    second publish failed with 'Directory not empty' and lost the retrain."""
    registry = BundleRegistry(tmp_path / "bundles")
    for _ in range(2):
        staging = registry.staging("llm-ttft", "hint")
        staging.mkdir()
        (staging / "manifest.json").write_text('{"version": "v1"}')
        registry.publish("llm-ttft", staging, "llm-ttft-v1")
        assert not staging.exists()
    assert registry.current("llm-ttft") == "llm-ttft-v1"
    assert registry.versions("llm-ttft") == ["llm-ttft-v1"]
