"""The data plane: the one place that validates, looks up the cache, predicts, counts and swaps.

HTTP and gRPC are thin adapters over :class:`DataPlane`. Models are held per domain in an
immutable snapshot that is replaced atomically: a request takes the snapshot once and finishes
on the models it started with, however many swaps happen meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any, Protocol

import numpy as np

from slocast.artifacts import ModelBundle, validate_records
from slocast.errors import ConfigError, InputError
from slocast.features import numeric_block
from slocast.models.base import Bounds
from slocast.schema import DomainSpec, Prediction, get_domain
from slocast.serving.cache import CacheUnavailable, LRUCache, PredictionCache, cache_keys
from slocast.serving.coldstart import PRIOR_INPUTS, ColdStartLatency
from slocast.serving.metrics import ServingMetrics

__all__ = ["LLM_DOMAINS", "DataPlane", "LoadedModel"]

LLM_DOMAINS = ("llm-ttft", "llm-tpot")
log = logging.getLogger(__name__)


class _Predictor(Protocol):
    @property
    def version(self) -> str: ...

    def predict_matrix(
        self,
        records: Sequence[Mapping[str, object]],
        coverage: float | None = None,
        upper_only: bool = False,
    ) -> Bounds: ...

    def predict_columns(
        self,
        numeric: Mapping[str, np.ndarray],
        categorical: Mapping[str, Sequence[object]],
        rows: int,
        coverage: float | None = None,
        upper_only: bool = False,
    ) -> Bounds: ...


@dataclass(frozen=True)
class LoadedModel:
    """A model serving one domain, and when it was loaded."""

    domain: str
    spec: DomainSpec
    predictor: _Predictor
    coverage: float
    family: str
    loaded_at: datetime
    bundle: ModelBundle | None = None

    @property
    def version(self) -> str:
        return self.predictor.version

    @property
    def cold_start(self) -> bool:
        return self.bundle is None

    @property
    def created_at(self) -> datetime | None:
        """When its bundle was written (None: the cold-start model has none)."""
        return None if self.bundle is None else self.bundle.created_at

    @property
    def numeric_inputs(self) -> tuple[str, ...]:
        """The numeric columns :meth:`_Predictor.predict_columns` reads."""
        if self.cold_start:
            return PRIOR_INPUTS
        return self.spec.numbers

    def cache_fields(self) -> list[str]:
        spec = self.spec
        extras = [c for c in (spec.group, spec.user_request) if c and c not in spec.features]
        return [*spec.features, *extras]


def _loaded(bundle: ModelBundle) -> LoadedModel:
    return LoadedModel(
        bundle.spec.name,
        bundle.spec,
        bundle,
        bundle.coverage,
        str(bundle.manifest["family"]),
        datetime.now(UTC),
        bundle,
    )


def _cold_start(domain: str, coverage: float) -> LoadedModel:
    target = domain.removeprefix("llm-")
    return LoadedModel(
        domain,
        get_domain(domain),
        ColdStartLatency(target, coverage),
        coverage,
        "cold-start",
        datetime.now(UTC),
    )


class DataPlane:
    def __init__(
        self,
        bundles: Sequence[ModelBundle] = (),
        cache: PredictionCache | None = None,
        metrics: ServingMetrics | None = None,
        max_batch: int = 10_000,
        llm_coverage: float = 0.9,
        cache_max_batch: int = 64,
    ) -> None:
        """``cache_max_batch``: batches up to this size go through the cache; larger ones are
        computed outright, because compiled trees predict a row in less time than its cache key
        takes to hash, so a large batch loses more on keys than it saves on hits."""
        self.cache = cache if cache is not None else LRUCache()
        self.metrics = metrics or ServingMetrics()
        self.max_batch = max_batch
        self.cache_max_batch = cache_max_batch
        self._lock = threading.Lock()
        models = {d: _cold_start(d, llm_coverage) for d in LLM_DOMAINS}
        for bundle in bundles:
            models[bundle.spec.name] = _loaded(bundle)
        self._models: Mapping[str, LoadedModel] = models
        for model in models.values():
            self.metrics.set_model(model.domain, model.version, model.coverage, model.created_at)

    # -- models ------------------------------------------------------------------------------
    @property
    def models(self) -> Mapping[str, LoadedModel]:
        """The current snapshot (immutable; swaps replace it whole)."""
        return self._models

    def model(self, domain: str) -> LoadedModel:
        try:
            return self._models[domain]
        except KeyError:
            known = ", ".join(sorted(self._models))
            raise ConfigError(
                f"no model for domain {domain!r}; loaded: {known}", field="domain"
            ) from None

    def swap(self, bundle: ModelBundle) -> bool:
        """Serve ``bundle`` for its domain from now on; False when that version already serves."""
        with self._lock:
            current = self._models.get(bundle.spec.name)
            if current is not None and current.version == bundle.version:
                return False
            self._models = {**self._models, bundle.spec.name: _loaded(bundle)}
        self.metrics.set_model(bundle.spec.name, bundle.version, bundle.coverage, bundle.created_at)
        self.metrics.model_swaps.labels(bundle.spec.name).inc()
        log.info(
            "serving %s %s (%s)",
            bundle.spec.name,
            bundle.version,
            bundle.engine,
            extra={"domain": bundle.spec.name, "version": bundle.version, "engine": bundle.engine},
        )
        return True

    # -- prediction --------------------------------------------------------------------------
    def predict(
        self,
        domain: str,
        items: Sequence[Mapping[str, Any]],
        coverage: float | None = None,
        validated: bool = False,
    ) -> list[Prediction]:
        """Calibrated bounds for ``items`` (in order), through the cache."""
        model = self.model(domain)
        points, uppers = self._bounds(model, items, coverage, validated)
        promised = model.coverage if coverage is None else coverage
        return [
            Prediction(point=p, upper=u, coverage=promised, model_version=model.version)
            for p, u in zip(points, uppers, strict=True)
        ]

    def _bounds(
        self,
        model: LoadedModel,
        items: Sequence[Mapping[str, Any]],
        coverage: float | None,
        validated: bool,
        upper_only: bool = False,
    ) -> tuple[list[float], list[float]]:
        """(points, upper bounds) for ``items``; points are NaN when ``upper_only``."""
        self._check_batch(len(items), coverage, "items")
        if not validated:
            validate_records(items, model.spec)
        if not self.cache.enabled or len(items) > self.cache_max_batch:
            self._count(model, len(items), cache_misses=len(items))
            bounds = model.predictor.predict_matrix(items, coverage, upper_only)
            return bounds.point.tolist(), bounds.upper.tolist()
        # Keys name the domain (the cold-start TTFT and TPOT priors share a version) and
        # bound-only entries, which carry no point, live under keys of their own.
        tag = f"{model.domain}/{model.version}" + ("/upper" if upper_only else "")
        keys = cache_keys(tag, coverage, model.cache_fields(), items)
        try:
            cached = self.cache.get_many(keys)
        except CacheUnavailable:
            self.metrics.cache_errors.inc()
            cached = [None] * len(keys)
        missing = [i for i, hit in enumerate(cached) if hit is None]
        self._count(model, len(items), cache_misses=len(missing))
        self.metrics.domain(model.domain).cache_hits.inc(len(items) - len(missing))
        results = [c if c is not None else (0.0, 0.0) for c in cached]
        if missing:
            todo = [items[i] for i in missing] if len(missing) < len(items) else items
            bounds = model.predictor.predict_matrix(todo, coverage, upper_only)
            fresh = list(zip(bounds.point.tolist(), bounds.upper.tolist(), strict=True))
            for i, value in zip(missing, fresh, strict=True):
                results[i] = value
            try:
                self.cache.put_many({keys[i]: v for i, v in zip(missing, fresh, strict=True)})
            except CacheUnavailable:
                self.metrics.cache_errors.inc()
        points, uppers = zip(*results, strict=True)
        return list(points), list(uppers)

    def _check_batch(self, size: int, coverage: float | None, field: str) -> None:
        if size == 0:
            raise InputError("empty batch: send at least one job", field=field)
        if size > self.max_batch:
            raise InputError(f"batch of {size} exceeds the limit of {self.max_batch}", field=field)
        if coverage is not None and not 0.0 < coverage < 1.0:
            raise InputError(f"coverage must be in (0, 1), got {coverage}", field="coverage")

    def predict_columns(
        self,
        domain: str,
        numeric: Mapping[str, np.ndarray],
        categorical: Mapping[str, Sequence[str | None]],
        coverage: float | None = None,
    ) -> tuple[Bounds, LoadedModel]:
        """Bounds for jobs sent as columns (every column one value per job, NaN / None missing).

        Large batches skip the per-job dicts altogether; they also skip the cache, whose keys
        are per job. Numbers must come as numeric columns and categories as categorical ones.
        """
        model = self.model(domain)
        spec = model.spec
        lengths = {f"numeric.{k}": len(v) for k, v in numeric.items()} | {
            f"categorical.{k}": len(v) for k, v in categorical.items()
        }
        # The batch is as long as most columns are: the odd one out is the one to name.
        size = Counter(lengths.values()).most_common(1)[0][0] if lengths else 0
        for name, length in lengths.items():
            if length != size:
                raise InputError(
                    f"column {name} has {length} values, the others {size}",
                    field=f"columns.{name}",
                )
        self._check_batch(size, coverage, "columns")
        for names, given, kind in (
            (spec.numbers, numeric, "numeric"),
            (spec.texts, categorical, "categorical"),
        ):
            for name in names:
                if name not in given and name not in spec.optional and name != spec.group:
                    raise InputError(
                        f"missing {kind} column {name!r}", field=f"columns.{kind}.{name}"
                    )
        low, high = spec.number_range
        for name in spec.numbers:
            if name in numeric:
                column = np.asarray(numeric[name], dtype=np.float64)
                outside = np.flatnonzero((column < low) | (column > high) | np.isinf(column))
                if outside.size:
                    raise InputError(
                        f"column {name!r} must be in {spec.number_range_text}, "
                        f"got {column[outside[0]]!r} at job {outside[0]}",
                        field=f"columns.numeric.{name}",
                    )
        self._count(model, size, cache_misses=size)  # a miss: computed, not looked up
        return model.predictor.predict_columns(numeric, categorical, size, coverage), model

    def predict_llm(
        self, items: Sequence[Mapping[str, Any]]
    ) -> tuple[list[float], list[float], float]:
        """TTFT and TPOT upper bounds (ms) for llm-d requests; both models from one snapshot.

        llm-d's routes serve only the bounds, so the point models are not run.
        """
        return self._predict_llm(self._models, items)

    def _predict_llm(
        self, snapshot: Mapping[str, LoadedModel], items: Sequence[Mapping[str, Any]]
    ) -> tuple[list[float], list[float], float]:
        _, ttft = self._bounds(snapshot["llm-ttft"], items, None, True, upper_only=True)
        _, tpot = self._bounds(snapshot["llm-tpot"], items, None, True, upper_only=True)
        return ttft, tpot, snapshot["llm-ttft"].coverage

    def predict_llm_rows(self, rows: Sequence[Any]) -> tuple[list[float], list[float], float]:
        """:meth:`predict_llm` for validated objects with one attribute per field (decoded
        structs, pydantic models).

        Batches the cache takes go through it as dicts. Larger ones are read once into a block
        of numbers that both models share: no dict per job, no feature read twice.
        """
        snapshot = self._models
        models = [snapshot[d] for d in LLM_DOMAINS]
        if self.cache.enabled and len(rows) <= self.cache_max_batch:
            fields = list(dict.fromkeys(f for m in models for f in m.cache_fields()))
            items = [{f: getattr(r, f, None) for f in fields} for r in rows]
            return self._predict_llm(snapshot, items)
        self._check_batch(len(rows), None, "items")
        # A model input the rows do not carry is missing, as an absent key is in a dict.
        wanted = dict.fromkeys(f for m in models for f in m.numeric_inputs)
        names = [name for name in wanted if hasattr(rows[0], name)]
        block = numeric_block(rows, names, attrgetter)
        numeric = {name: block[:, k] for k, name in enumerate(names)}
        categories = dict.fromkeys(c for m in models for c in m.spec.categorical)
        categorical = {c: [getattr(r, c, None) for r in rows] for c in categories}
        uppers = []
        for model in models:
            self._count(model, len(rows), cache_misses=len(rows))
            bounds = model.predictor.predict_columns(numeric, categorical, len(rows), None, True)
            uppers.append(bounds.upper.tolist())
        return uppers[0], uppers[1], models[0].coverage

    def _count(self, model: LoadedModel, size: int, cache_misses: int) -> None:
        counters = self.metrics.domain(model.domain)
        counters.batch_size.observe(size)
        counters.predictions.inc(size)
        counters.cache_misses.inc(cache_misses)

    # -- status ------------------------------------------------------------------------------
    def describe(self) -> list[dict[str, Any]]:
        """What is loaded: domain, version, promised coverage and the coverage last observed,
        family, engine, load time, features, and the grace past the request where bounds stop.

        The observed coverage is that of the model's own bounds over the outcomes its bundle
        has seen (the calibration replay, and the live outcomes a trainer republishes);
        None for a cold-start model, which has seen none.
        """
        return [_description(m) for m in self._models.values()]

    @property
    def ready(self) -> bool:
        return bool(self._models)

    def last_load(self) -> datetime:
        return max(m.loaded_at for m in self._models.values())


def _description(model: LoadedModel) -> dict[str, Any]:
    forecaster = model.bundle.forecaster if model.bundle else None
    aci = forecaster.aci if forecaster else None
    return {
        "domain": model.domain,
        "version": model.version,
        "coverage": model.coverage,
        "observed_coverage": aci.observed_coverage if aci else None,
        "observed_outcomes": aci.observed if aci else 0,
        "family": model.family,
        "engine": model.bundle.engine if model.bundle else "cold-start",
        "cold_start": model.cold_start,
        "loaded_at": model.loaded_at.isoformat(),
        "features": list(model.spec.features),
        "request_grace": forecaster.cap_grace if forecaster else None,
    }
