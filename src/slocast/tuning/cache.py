"""On-disk cache of preprocessed datasets (parquet), keyed by the data file's content hash.

Reading and parsing a trace, and computing its per-group history features, is the same work
every time a search runs on the same file. The cache key is the sha256 of the file plus the
adapter kind, the slocast version and a digest of the code that builds the frame (the
adapters and the domain specs): an edited file, an upgraded slocast or a changed adapter in a
working copy never reads a stale frame (one cached before the Nextflow adapter kept the
attempt count once served a search a frame without it).
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Literal

import pandas as pd

from slocast import __version__, datasets, schema
from slocast.artifacts import sha256_file
from slocast.datasets import Dataset, load_dataset, parse_dataset_arg
from slocast.errors import ConfigError
from slocast.schema import DomainSpec

__all__ = ["CacheMode", "cache_path", "preprocess"]

CacheMode = Literal["auto", "skip", "only"]


def cache_path(dataset_arg: str, cache_dir: Path) -> Path:
    """Where the preprocessed frame of ``KIND:PATH`` lives (``.parquet``; ``.json`` beside it)."""
    kind, path = parse_dataset_arg(dataset_arg)
    if not path.is_file():
        raise ConfigError(f"data file {path} does not exist", field="dataset", source=str(path))
    key = f"{sha256_file(path)}:{kind}:{__version__}:{frame_code_digest()}"
    return cache_dir / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:20]}.parquet"


@functools.cache
def frame_code_digest() -> str:
    """sha256 of the sources that turn a file into a frame: the adapters and the domain specs."""
    digest = hashlib.sha256()
    sources = [*sorted(Path(datasets.__file__).parent.glob("*.py")), Path(schema.__file__)]
    for source in sources:
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def preprocess(dataset_arg: str, cache_dir: Path, mode: CacheMode = "auto") -> Dataset:
    """The dataset, from the cache when present.

    ``auto`` reads the cache or builds it; ``skip`` (``--skip-preprocessing``) insists on the
    cache; ``only`` (``--preprocess-only``) rebuilds it.
    """
    target = cache_path(dataset_arg, cache_dir)
    meta_path = target.with_suffix(".json")
    if mode != "only" and target.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return Dataset(
            pd.read_parquet(target),
            DomainSpec.from_dict(meta["spec"]),
            meta["source"],
            int(meta["rows_read"]),
            {str(k): int(v) for k, v in meta["dropped"].items()},
        )
    if mode == "skip":
        raise ConfigError(
            f"no preprocessed cache for {dataset_arg} in {cache_dir}: run with "
            "--preprocess-only first, or drop --skip-preprocessing",
            field="skip_preprocessing",
        )
    data = load_dataset(dataset_arg)
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = target.with_suffix(".parquet.tmp")
    data.frame.to_parquet(staging, index=False)
    meta_path.write_text(
        json.dumps(
            {
                "spec": data.spec.to_dict(),
                "source": data.source,
                "rows_read": data.rows_read,
                "dropped": data.dropped,
            }
        )
    )
    staging.replace(target)
    return data
