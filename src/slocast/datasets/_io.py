"""Shared reading and validation helpers for the dataset adapters."""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from slocast.errors import DataFormatError, EmptyDataError
from slocast.schema import DomainSpec


@dataclass(frozen=True)
class Dataset:
    """Rows of one domain, sorted by time, with what the adapter dropped and why."""

    frame: pd.DataFrame
    spec: DomainSpec
    source: str
    rows_read: int
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.frame)


def require_file(path: Path, what: str = "trace file") -> None:
    """``path`` names a file: a folder or nothing there raises DataFormatError saying which."""
    if path.is_dir():
        raise DataFormatError(f"{path} is a folder, not a {what}", source=str(path))
    if not path.is_file():
        raise DataFormatError(f"no such file: {path}", source=str(path))


def read_bytes(path: Path) -> bytes:
    """Whole file, gzip-transparent; missing or corrupt files raise DataFormatError."""
    require_file(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataFormatError(f"corrupt gzip file: {exc}", source=str(path)) from exc
    return raw


def read_text(path: Path) -> str:
    """Whole file as text, gzip-transparent; missing or undecodable files raise DataFormatError."""
    raw = read_bytes(path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"file is not UTF-8 text: {exc}", source=str(path)) from exc


def read_table(path: Path) -> pd.DataFrame:
    """A comma- or tab-separated file (the separator read off the header) as strings."""
    text = read_text(path)
    if not text.strip():
        raise EmptyDataError("file is empty", source=str(path))
    header = text.split("\n", 1)[0]
    sep = "\t" if header.count("\t") > header.count(",") else ","
    try:
        return pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataFormatError(f"not a valid CSV file: {exc}", source=str(path)) from exc


def read_jsonl(path: Path) -> pd.DataFrame:
    text = read_text(path)
    if not text.strip():
        raise EmptyDataError("file is empty", source=str(path))
    try:
        return pd.read_json(io.StringIO(text), lines=True)
    except ValueError as exc:
        raise DataFormatError(f"not valid JSON lines: {exc}", source=str(path)) from exc


def require_columns(frame: pd.DataFrame, columns: Iterable[str], path: Path) -> None:
    for column in columns:
        if column not in frame.columns:
            raise DataFormatError(f"missing column {column!r}", field=column, source=str(path))


def numeric_column(
    frame: pd.DataFrame,
    column: str,
    path: Path,
    parse: Callable[[object], float] | None = None,
    missing: Iterable[str] = ("", "-"),
) -> pd.Series:
    """A column as float64; unparsable or infinite values raise DataFormatError naming the
    column (``1e400`` parses, to infinity, which no job size or time is).

    Values listed in ``missing`` become NaN. ``parse`` converts the remaining strings (sizes,
    durations); without it they must be plain numbers.
    """
    series = frame[column]
    if pd.api.types.is_numeric_dtype(series):
        return require_finite(series.astype("float64"), column, path)
    text = series.astype("string").str.strip()
    text = text.mask(text.isin(list(missing)))
    if parse is None:
        values = pd.to_numeric(text, errors="coerce")
        bad = values.isna() & text.notna()
    else:
        converted = [np.nan if pd.isna(v) else _try(parse, v) for v in text]
        values = pd.Series(converted, index=frame.index, dtype="float64")
        bad = values.isna() & text.notna()
    if bad.any():
        example = text[bad].iloc[0]
        raise DataFormatError(
            f"column {column!r} has a value that is not a number: {example!r}",
            field=column,
            source=str(path),
        )
    return require_finite(values.astype("float64"), column, path)


def require_finite(values: pd.Series, column: str, path: Path) -> pd.Series:
    """``values`` unchanged, unless one is infinite: a DataFormatError naming the column."""
    infinite = np.isinf(values.to_numpy(np.float64))
    if infinite.any():
        raise DataFormatError(
            f"column {column!r} has a value that is not a finite number: "
            f"{float(values[infinite].iloc[0])}",
            field=column,
            source=str(path),
        )
    return values


def _try(parse: Callable[[object], float], value: object) -> float:
    try:
        return parse(value)
    except ValueError:
        return float("nan")


def require_values(values: pd.Series, column: str, path: Path) -> None:
    """A required column with no usable value at all is a bad file, not an empty result."""
    if values.notna().sum() == 0:
        raise EmptyDataError(
            f"column {column!r} has no usable values", field=column, source=str(path)
        )


def request_mask(spec: DomainSpec, has_request: pd.Series) -> tuple[DomainSpec, pd.Series]:
    """Which jobs to keep for their request, and the spec to use.

    Jobs without a request are dropped -- unless the file records no request at all (some logs
    never do): then every job stays and the spec has no request baseline.
    """
    if has_request.any():
        return spec, has_request
    return replace(spec, user_request=None), pd.Series(True, index=has_request.index)


def finish(
    frame: pd.DataFrame,
    spec: DomainSpec,
    path: Path,
    rows_read: int,
    dropped: dict[str, int],
) -> Dataset:
    """Sort by time, drop features that carry no information in this file, and check size."""
    constant = {c for c in spec.features if frame[c].nunique(dropna=True) <= 1}
    # A request column stays even when constant: it is the baseline, not only a feature. So
    # does a recorded attempt count: a log of first attempts still serves later ones.
    constant.discard(spec.user_request or "")
    if spec.retry and frame[spec.retry].notna().any():
        constant.discard(spec.retry)
    spec = spec.without_features(constant)
    frame = frame.sort_values(spec.time, kind="stable").reset_index(drop=True)
    if frame.empty:
        raise EmptyDataError("no usable rows left after validation", source=str(path))
    columns = [*spec.features, spec.target, spec.time, spec.known_at]
    for extra in (spec.group, spec.user_request):
        if extra and extra not in columns:
            columns.append(extra)
    return Dataset(
        frame[columns], spec, str(path), rows_read, {k: v for k, v in dropped.items() if v}
    )
