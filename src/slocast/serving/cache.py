"""Prediction caches: in-process LRU by default, Redis when replicas should share one.

Keys hash the canonical feature vector (the domain's inputs in the spec's fixed order, so the
order of fields in a request does not matter) together with the domain, the model version and
the coverage, so a new model never serves an old model's values, nor one domain another's.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import orjson

__all__ = ["CacheUnavailable", "LRUCache", "PredictionCache", "RedisCache", "cache_keys"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class CacheUnavailable(Exception):
    """The shared cache did not answer (or is resting after it did not): the caller predicts
    without it. A cache outage must never fail a prediction the model can compute."""


Entry = tuple[float, float]


class PredictionCache(Protocol):
    @property
    def enabled(self) -> bool:
        """False when nothing is ever stored: callers then skip hashing keys."""
        ...

    def get_many(self, keys: Sequence[str]) -> list[Entry | None]: ...

    def put_many(self, entries: Mapping[str, Entry]) -> None: ...


def cache_keys(
    version: str,
    coverage: float | None,
    fields: Sequence[str],
    records: Sequence[Mapping[str, Any]],
) -> list[str]:
    """One key per record: sha1 of (version, coverage, values of ``fields`` in that order).

    >>> a = cache_keys("v1", None, ["x", "y"], [{"x": 1, "y": 2}])
    >>> b = cache_keys("v1", None, ["x", "y"], [{"y": 2, "x": 1, "ignored": 3}])
    >>> a == b, a == cache_keys("v2", None, ["x", "y"], [{"x": 1, "y": 2}])
    (True, False)
    """
    prefix = orjson.dumps([version, coverage])
    return [
        hashlib.sha1(
            prefix + orjson.dumps([r.get(f) for f in fields]), usedforsecurity=False
        ).hexdigest()
        for r in records
    ]


class LRUCache:
    """A bounded, thread-safe least-recently-used map."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0

    def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        out: list[Entry | None] = []
        with self._lock:
            for key in keys:
                value = self._data.get(key)
                if value is not None:
                    self._data.move_to_end(key)
                out.append(value)
        return out

    def put_many(self, entries: Mapping[str, Entry]) -> None:
        if self.max_entries <= 0:
            return
        with self._lock:
            self._data.update(entries)
            for key in entries:
                self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class RedisCache:
    """Shared cache in Redis (``SLOCAST_CACHE_URL=redis://host:6379/0``); entries expire.

    Best effort: a call that fails or takes longer than ``timeout_s`` (a lookup slower than
    the prediction it saves is no use) raises :class:`CacheUnavailable`, and for the next
    ``retry_after_s`` every call raises it at once instead of waiting on a dead server again.
    """

    def __init__(
        self,
        url: str,
        ttl_seconds: int = 3600,
        prefix: str = "slocast:",
        timeout_s: float = 0.05,
        retry_after_s: float = 5.0,
    ) -> None:
        import redis

        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._failures: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self.ttl_seconds = ttl_seconds
        self.prefix = prefix
        self.retry_after_s = retry_after_s
        self._resting_until = 0.0

    enabled = True

    def _call(self, work: Callable[[], T]) -> T:
        if time.monotonic() < self._resting_until:
            raise CacheUnavailable("redis cache resting after a failure")
        try:
            return work()
        except self._failures as exc:
            self._resting_until = time.monotonic() + self.retry_after_s
            log.warning(
                "redis cache unavailable (%s); predicting without it, next try in %.0f s",
                exc,
                self.retry_after_s,
            )
            raise CacheUnavailable(str(exc)) from exc

    def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        if not keys:
            return []
        values = self._call(lambda: self._client.mget([self.prefix + k for k in keys]))
        out: list[Entry | None] = []
        for raw in values:
            if raw is None:
                out.append(None)
            else:
                point, upper = orjson.loads(raw)
                out.append((float(point), float(upper)))
        return out

    def put_many(self, entries: Mapping[str, Entry]) -> None:
        if not entries:
            return

        def store() -> object:
            pipe = self._client.pipeline(transaction=False)
            for key, value in entries.items():
                pipe.set(self.prefix + key, orjson.dumps(value), ex=self.ttl_seconds)
            return pipe.execute()

        # Built inside the call: while the cache rests, nothing is encoded for a store that
        # will not happen.
        self._call(store)
