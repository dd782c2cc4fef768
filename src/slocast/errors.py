"""One exception hierarchy for slocast.

::

    SlocastError                  root: catch this to catch everything slocast raises
    ├── InputError                the caller's data or arguments are wrong (CLI exit 2, HTTP 4xx)
    │   ├── DataFormatError       a file is malformed or lacks a column
    │   ├── EmptyDataError        nothing usable is left after validation
    │   ├── ConfigError           a setting or option has an invalid value
    │   └── BundleError           a model bundle is missing, corrupt or does not match
    └── LifecycleError            an object was used out of order (predict before fit, ...)

Every error carries structured fields (``field``, ``source``) so transports can name what was
wrong without parsing messages. Transports map classes to exit codes / HTTP statuses / gRPC codes
in exactly one place each (``slocast.cli`` for exit codes).
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = [
    "BundleError",
    "ConfigError",
    "DataFormatError",
    "EmptyDataError",
    "InputError",
    "LifecycleError",
    "SlocastError",
    "require_fields",
    "require_positive",
]


class SlocastError(Exception):
    """Root of every error slocast raises on purpose."""

    def __init__(self, message: str, *, field: str | None = None, source: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.source = source

    def __str__(self) -> str:
        where = [f"{k}={v}" for k, v in (("file", self.source), ("field", self.field)) if v]
        return f"{self.message} ({', '.join(where)})" if where else self.message


class InputError(SlocastError):
    """The caller's input is wrong; retrying with the same input fails again."""


class DataFormatError(InputError):
    """A data file cannot be parsed or lacks a required column."""


class EmptyDataError(InputError):
    """No usable rows (or no usable values in a required column) remain."""


class ConfigError(InputError):
    """A setting or command-line option has an invalid value."""


class BundleError(InputError):
    """A model bundle is missing, corrupt (hash mismatch) or incompatible."""


class LifecycleError(SlocastError):
    """An object was used out of order, e.g. ``predict`` before ``conformalize``."""


def require_fields(owner: object, rule: Callable[[float], bool], words: str, *names: str) -> None:
    """A ConfigError naming the first of ``owner``'s fields ``names`` whose value breaks ``rule``
    (``words`` says the rule: ``"> 0"``); NaN breaks every rule written as a comparison.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Fleet:
    ...     replicas: int
    >>> require_fields(Fleet(0), lambda v: v >= 1, ">= 1", "replicas")
    Traceback (most recent call last):
    ...
    slocast.errors.ConfigError: replicas must be >= 1, got 0 (field=replicas)
    """
    for name in names:
        value = getattr(owner, name)
        if not rule(value):
            raise ConfigError(f"{name} must be {words}, got {value!r}", field=name)


def require_positive(owner: object, *names: str) -> None:
    """:func:`require_fields` for quantities that must be a finite number above zero (a rate,
    a time, a load): infinity is refused too, as a time or rate nothing can run with.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Replay:
    ...     load: float
    >>> require_positive(Replay(float("inf")), "load")
    Traceback (most recent call last):
    ...
    slocast.errors.ConfigError: load must be > 0 and finite, got inf (field=load)
    """
    require_fields(owner, lambda v: 0 < v < math.inf, "> 0 and finite", *names)
