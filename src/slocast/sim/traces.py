"""Trace readers for the simulator: ``KIND:PATH`` like the datasets, kinds below.

- ``twitter``: requests per second, whitespace separated (``workload.txt``, or the ``.tbz2`` /
  ``.tar.*`` archive holding it, or a gzip'd text file).
- ``azure``: Azure LLM inference trace CSV (``TIMESTAMP, ContextTokens, GeneratedTokens``).
- ``mooncake``: Mooncake JSON lines (``timestamp`` ms, ``input_length``, ``output_length``,
  ``hash_ids`` of 512-token prefix blocks).
- ``alibaba-lora``: the Alibaba GenAI request trace (base model per request), for placement.
- ``alibaba-stages``: the directory of the Alibaba GenAI per-stage series
  (see :mod:`slocast.sim.pipeline`).
"""

from __future__ import annotations

import gzip
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from slocast.errors import ConfigError, DataFormatError, EmptyDataError

__all__ = ["TRACE_KINDS", "LLMRequests", "load_llm_requests", "load_rates", "parse_trace_arg"]

TRACE_KINDS = ("twitter", "azure", "mooncake", "alibaba-stages", "alibaba-lora")


def parse_trace_arg(value: str) -> tuple[str, Path]:
    kind, sep, path = value.partition(":")
    if not sep or not path:
        raise ConfigError(f"expected KIND:PATH, got {value!r}", field="trace")
    if kind not in TRACE_KINDS:
        raise ConfigError(
            f"unknown trace kind {kind!r}; known: {', '.join(TRACE_KINDS)}", field="trace"
        )
    exists = Path(path).is_dir() if kind == "alibaba-stages" else Path(path).is_file()
    if not exists:
        raise ConfigError(f"trace {path} does not exist", field="trace", source=path)
    return kind, Path(path)


def _read_bytes(path: Path) -> bytes:
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as archive:
            member = next((m for m in archive.getmembers() if m.isfile()), None)
            if member is None:
                raise DataFormatError("archive holds no file", source=str(path))
            handle = archive.extractfile(member)
            assert handle is not None
            return handle.read()
    raw = path.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def load_rates(path: Path, start_s: int = 0, duration_s: int | None = None) -> np.ndarray:
    """Requests per second (a slice of ``duration_s`` seconds from ``start_s``)."""
    try:
        rates = np.array(_read_bytes(path).split(), dtype=np.float64)
    except ValueError as exc:
        raise DataFormatError(f"not a list of per-second rates: {exc}", source=str(path)) from exc
    end = None if duration_s is None else start_s + duration_s
    rates = rates[start_s:end]
    if len(rates) == 0:
        raise EmptyDataError("no seconds in the selected slice", source=str(path))
    if (rates < 0).any():
        raise DataFormatError("negative request rate", field="rate", source=str(path))
    return rates


@dataclass(frozen=True)
class LLMRequests:
    """LLM requests in arrival order: seconds from the first, token counts, prefix blocks."""

    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    prefix_blocks: list[tuple[int, ...]]  # empty tuples when the trace has no hashes

    def __len__(self) -> int:
        return len(self.arrival_s)


def load_llm_requests(kind: str, path: Path, limit: int | None = None) -> LLMRequests:
    if kind == "azure":
        frame = pd.read_csv(path)
        missing = {"TIMESTAMP", "ContextTokens", "GeneratedTokens"} - set(frame.columns)
        if missing:
            raise DataFormatError(f"missing column {sorted(missing)[0]}", source=str(path))
        stamps = pd.to_datetime(frame["TIMESTAMP"], format="mixed")
        arrival = (stamps - stamps.min()).dt.total_seconds().to_numpy(np.float64)
        inputs, outputs = frame["ContextTokens"], frame["GeneratedTokens"]
        blocks: list[tuple[int, ...]] = [() for _ in range(len(frame))]
    elif kind == "mooncake":
        rows = [json.loads(line) for line in _read_bytes(path).decode().splitlines() if line]
        frame = pd.DataFrame(rows)
        missing = {"timestamp", "input_length", "output_length"} - set(frame.columns)
        if missing:
            raise DataFormatError(f"missing field {sorted(missing)[0]}", source=str(path))
        arrival = (frame["timestamp"] - frame["timestamp"].min()).to_numpy(np.float64) / 1000.0
        inputs, outputs = frame["input_length"], frame["output_length"]
        hashes: list[list[int]] = (
            frame["hash_ids"].tolist() if "hash_ids" in frame else [[]] * len(frame)
        )
        blocks = [tuple(int(h) for h in ids) for ids in hashes]
    else:
        raise ConfigError(f"trace kind {kind!r} has no LLM requests", field="trace")
    order = np.argsort(arrival, kind="stable")[:limit]
    if len(order) == 0:
        raise EmptyDataError("trace has no requests", source=str(path))
    return LLMRequests(
        arrival[order],
        inputs.to_numpy(np.float64)[order],
        np.maximum(outputs.to_numpy(np.float64)[order], 1.0),
        [blocks[i] for i in order],
    )
