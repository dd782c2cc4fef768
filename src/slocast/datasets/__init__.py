"""Adapters from real trace files to frames of one domain.

``KIND:PATH`` names a file and its format; the kind decides the domain:

>>> sorted(KINDS)
['alibaba-lora', 'llmd-tpot', 'llmd-ttft', 'nextflow', 'swf']
>>> KINDS["swf"].domain
'hpc-runtime'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from slocast.datasets._io import Dataset
from slocast.datasets.alibaba import load_alibaba_lora
from slocast.datasets.llmd import load_llmd
from slocast.datasets.nextflow import load_nextflow
from slocast.datasets.swf import load_swf
from slocast.errors import ConfigError

__all__ = ["KINDS", "Dataset", "DatasetKind", "load_dataset", "parse_dataset_arg"]


@dataclass(frozen=True)
class DatasetKind:
    domain: str
    load: Callable[[Path], Dataset]


KINDS: dict[str, DatasetKind] = {
    "llmd-ttft": DatasetKind("llm-ttft", partial(load_llmd, target="ttft")),
    "llmd-tpot": DatasetKind("llm-tpot", partial(load_llmd, target="tpot")),
    "swf": DatasetKind("hpc-runtime", load_swf),
    "nextflow": DatasetKind("task-memory", load_nextflow),
    "alibaba-lora": DatasetKind("serving-latency", load_alibaba_lora),
}


def parse_dataset_arg(value: str) -> tuple[str, Path]:
    """Split ``KIND:PATH``; an unknown kind or a missing colon raises ConfigError."""
    kind, sep, path = value.partition(":")
    if not sep or not path:
        raise ConfigError(f"expected KIND:PATH, got {value!r}", field="dataset")
    if kind not in KINDS:
        known = ", ".join(sorted(KINDS))
        raise ConfigError(f"unknown dataset kind {kind!r}; known: {known}", field="dataset")
    return kind, Path(path)


def load_dataset(value: str) -> Dataset:
    """Load ``KIND:PATH`` into a :class:`Dataset` sorted by time."""
    kind, path = parse_dataset_arg(value)
    return KINDS[kind].load(path)
