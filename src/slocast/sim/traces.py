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
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from slocast.datasets._io import (
    numeric_column,
    read_bytes,
    read_table,
    read_text,
    require_columns,
)
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
    folder = kind == "alibaba-stages"  # the folder holding the per-stage series
    if not Path(path).exists():
        raise ConfigError(f"trace {path} does not exist", field="trace", source=path)
    if folder != Path(path).is_dir():
        what = "a folder (the one holding the stage files)" if folder else "a file"
        raise ConfigError(f"trace {path}: {kind} takes {what}", field="trace", source=path)
    return kind, Path(path)


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, unpacked from a tar archive (its first file) or gzip when it is one."""
    if not tarfile.is_tarfile(path):
        return read_bytes(path)
    try:
        with tarfile.open(path) as archive:
            member = next((m for m in archive.getmembers() if m.isfile()), None)
            if member is None:
                raise DataFormatError("archive holds no file", source=str(path))
            handle = archive.extractfile(member)
            assert handle is not None
            return handle.read()
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as exc:
        # A corrupt or cut-short archive: click would print "Aborted." for the EOFError.
        raise DataFormatError(f"cannot unpack: {exc}", source=str(path)) from exc


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
    if not np.isfinite(rates).all() or (rates < 0).any():
        raise DataFormatError(
            "request rates must be finite and not negative", field="rate", source=str(path)
        )
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
    """A trace's requests in arrival order (the first ``limit``); a value that is not a time,
    a token count (finite, not negative) or a list of block hashes raises DataFormatError
    naming the column."""
    if limit is not None and limit < 1:
        raise ConfigError(f"requests must be >= 1, got {limit}", field="requests")
    if kind == "azure":
        frame = read_table(path)
        require_columns(frame, ("TIMESTAMP", "ContextTokens", "GeneratedTokens"), path)
        try:
            stamps = pd.to_datetime(frame["TIMESTAMP"], format="mixed")
        except ValueError as exc:
            raise DataFormatError(
                f"column 'TIMESTAMP' has a value that is not a time: {exc}",
                field="TIMESTAMP",
                source=str(path),
            ) from exc
        arrival = (stamps - stamps.min()).dt.total_seconds().to_numpy(np.float64)
        inputs = _token_counts(frame, "ContextTokens", path)
        outputs = _token_counts(frame, "GeneratedTokens", path)
        blocks: list[tuple[int, ...]] = [() for _ in range(len(frame))]
    elif kind == "mooncake":
        frame = _json_lines(path)
        require_columns(frame, ("timestamp", "input_length", "output_length"), path)
        millis = numeric_column(frame, "timestamp", path).to_numpy(np.float64)
        if np.isnan(millis).any():
            raise DataFormatError("a request has no timestamp", field="timestamp", source=str(path))
        arrival = (millis - millis.min()) / 1000.0
        inputs = _token_counts(frame, "input_length", path)
        outputs = _token_counts(frame, "output_length", path)
        blocks = _prefix_blocks(frame, path)
    else:
        raise ConfigError(f"trace kind {kind!r} has no LLM requests", field="trace")
    order = np.argsort(arrival, kind="stable")[:limit]
    if len(order) == 0:
        raise EmptyDataError("trace has no requests", source=str(path))
    return LLMRequests(
        arrival[order],
        inputs[order],
        np.maximum(outputs[order], 1.0),
        [blocks[i] for i in order],
    )


def _json_lines(path: Path) -> pd.DataFrame:
    """One row per JSON object line, the line named when one is not. Not the datasets'
    ``read_jsonl``: pandas' JSON reader turns a ``timestamp`` column of epoch milliseconds into
    dates, and its errors name no line."""
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"line {number} is not JSON: {exc}", source=str(path)) from exc
        if not isinstance(row, dict):
            raise DataFormatError(f"line {number} is not a JSON object", source=str(path))
        rows.append(row)
    if not rows:
        raise EmptyDataError("trace has no requests", source=str(path))
    return pd.DataFrame(rows)


def _token_counts(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    counts = numeric_column(frame, column, path).to_numpy(np.float64)
    bad = np.flatnonzero(np.isnan(counts) | (counts < 0))
    if bad.size:
        raise DataFormatError(
            f"column {column!r} must hold token counts >= 0, request {bad[0]} has "
            f"{counts[bad[0]]:g}",
            field=column,
            source=str(path),
        )
    return counts


def _prefix_blocks(frame: pd.DataFrame, path: Path) -> list[tuple[int, ...]]:
    """Each request's prefix-block hashes (none where the trace has no ``hash_ids``)."""
    if "hash_ids" not in frame:
        return [() for _ in range(len(frame))]
    blocks = []
    for index, ids in enumerate(frame["hash_ids"].tolist()):
        if not isinstance(ids, list) or not all(
            isinstance(h, int) and not isinstance(h, bool) for h in ids
        ):
            raise DataFormatError(
                f"request {index}: 'hash_ids' must be a list of integers, got {ids!r}",
                field="hash_ids",
                source=str(path),
            )
        blocks.append(tuple(ids))
    return blocks
