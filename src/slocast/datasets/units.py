"""Parsers for the human-readable sizes, durations and timestamps found in workflow traces.

>>> parse_size("4 GB"), parse_size("512 MB"), parse_size("1073741824")
(4294967296.0, 536870912.0, 1073741824.0)
>>> parse_duration_s("1h 30m"), parse_duration_s("14400000"), parse_duration_s("250ms")
(5400.0, 14400.0, 0.25)
"""

from __future__ import annotations

import re

import pandas as pd

__all__ = ["parse_duration_s", "parse_size", "parse_timestamp_s"]

_SIZE_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?\d+)?)\s*([KMGTP]?)I?B?\s*$", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)\s*(ms|s|m|h|d)", re.IGNORECASE)


def parse_size(value: object) -> float:
    """Bytes from a raw byte count or a Nextflow size such as ``"4 GB"`` (binary multiples)."""
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"not a size: {value!r}")
    return float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]


def parse_duration_s(value: object) -> float:
    """Seconds from raw milliseconds (Nextflow's raw trace) or ``"1h 30m"`` / ``"250ms"``."""
    text = str(value).strip()
    try:
        return float(text) / 1000.0
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or _DURATION_PART.sub("", text).strip():
        raise ValueError(f"not a duration: {value!r}")
    return sum(float(n) * _DURATION_UNITS[u.lower()] for n, u in parts)


def parse_timestamp_s(value: object) -> float:
    """Epoch seconds from epoch milliseconds or an ISO-like date-time string."""
    text = str(value).strip()
    try:
        return float(text) / 1000.0
    except ValueError:
        pass
    stamp = pd.Timestamp(text)
    if pd.isna(stamp):
        raise ValueError(f"not a timestamp: {value!r}")
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return float(stamp.timestamp())
