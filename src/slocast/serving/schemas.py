"""Wire models (pydantic) of the HTTP API: llm-d's contract and slocast's generic routes."""

from __future__ import annotations

from typing import Annotated, Any, get_args, get_origin

import annotated_types
import msgspec
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model

from slocast.schema import MAX_NUMBER, DomainSpec

__all__ = [
    "BulkRequest",
    "DomainPredictResponse",
    "DomainPrediction",
    "LatencyFeatures",
    "LatencyRows",
    "LooseBulkRequest",
    "domain_item_model",
    "domain_request_model",
    "domain_samples_model",
]


# A count a request carries: tokens, requests, sizes.
Count = Annotated[int, Field(ge=0, le=MAX_NUMBER)]
# A share: KV-cache use, prefix-cache hit.
Share = Annotated[float, Field(ge=0.0, le=1.0)]


class LatencyFeatures(BaseModel):
    """One llm-d prediction request (and the feature part of a training row)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    kv_cache_percentage: Share
    input_token_length: Count
    num_request_waiting: Count
    num_request_running: Count
    num_tokens_generated: Count
    prefix_cache_score: Share
    pod_type: str | None = ""
    prefill_tokens_in_flight: Count = 0
    decode_tokens_in_flight: Count = 0
    encoder_matched_size: Count = 0
    encoder_input_size: Count = 0


class BulkRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    requests: list[LatencyFeatures] = Field(min_length=1, max_length=10_000)


class LooseBulkRequest(BaseModel):
    """``/predict/bulk``: items are validated one by one, so a bad one does not sink the rest."""

    model_config = ConfigDict(extra="ignore")

    requests: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)


class LatencyRows:
    """llm-d request rows, decoded by msgspec into objects with one attribute per field.

    The same fields, types, bounds and defaults as :class:`LatencyFeatures` and
    :class:`BulkRequest` (derived from them). msgspec decodes a 1,000-row bulk body in about a
    third of pydantic's time, without a dict per row. It is stricter (an integer field takes
    no ``12.0`` or ``"12"``): whatever it refuses goes to pydantic, which accepts what its lax
    rules allow or raises the error FastAPI would answer with. The prediction routes' hot path.
    """

    def __init__(self) -> None:
        self._one = TypeAdapter(LatencyFeatures)
        self._bulk = TypeAdapter(BulkRequest)
        self._fast_one = msgspec.json.Decoder(_as_struct(LatencyFeatures))
        self._fast_bulk = msgspec.json.Decoder(_as_struct(BulkRequest))

    # msgspec raises RecursionError on JSON nested past its depth limit; pydantic then answers
    # with its own error for the body (a 422), as for any other body msgspec refuses.
    def one(self, raw: bytes) -> Any:
        try:
            return self._fast_one.decode(raw)
        except (msgspec.DecodeError, RecursionError):
            return self._one.validate_json(raw)

    def bulk(self, raw: bytes) -> list[Any]:
        try:
            rows: list[Any] = self._fast_bulk.decode(raw).requests
        except (msgspec.DecodeError, RecursionError):
            rows = self._bulk.validate_json(raw).requests
        return rows


# pydantic's field constraints (annotated-types) and the msgspec.Meta keyword of each.
_CONSTRAINTS = {
    annotated_types.Ge: "ge",
    annotated_types.Gt: "gt",
    annotated_types.Le: "le",
    annotated_types.Lt: "lt",
    annotated_types.MinLen: "min_length",
    annotated_types.MaxLen: "max_length",
}


def _as_struct(model: type[BaseModel]) -> Any:
    """A msgspec Struct with ``model``'s fields, types, constraints and defaults (nested models
    included); unknown fields are ignored, as ``extra="ignore"`` does. A constraint msgspec
    cannot check raises: the fast decoder must never accept what the model refuses."""
    fields: list[Any] = []
    for name, info in model.model_fields.items():
        annotation: Any = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            annotation = _as_struct(annotation)
        elif get_origin(annotation) is list and issubclass(get_args(annotation)[0], BaseModel):
            annotation = list[_as_struct(get_args(annotation)[0])]  # type: ignore[misc]
        meta: dict[str, Any] = {}
        for constraint in info.metadata:
            key = _CONSTRAINTS.get(type(constraint))
            if key is None:
                raise TypeError(f"{model.__name__}.{name}: no msgspec form of {constraint!r}")
            meta[key] = getattr(constraint, key)
        if meta:
            annotation = Annotated[annotation, msgspec.Meta(**meta)]
        fields.append(
            (name, annotation) if info.is_required() else (name, annotation, info.default)
        )
    # Untracked by the garbage collector: a decoded row holds numbers, strings and lists of
    # rows, never a cycle, and a thousand tracked rows cost the decoder 7 % more.
    return msgspec.defstruct(f"{model.__name__}Struct", fields, kw_only=True, gc=False)


def domain_item_model(spec: DomainSpec) -> type[BaseModel]:
    """A strict item model for a domain: numbers must be finite numbers in the domain's range
    (:attr:`~slocast.schema.DomainSpec.number_range`), categories strings or integers (an id
    sent as a number names it too: user 12 is user "12", as the trainer stores it).

    Unknown fields are ignored; optional features (history a caller may not keep) may be left out.
    """
    low, high = spec.number_range
    number = Annotated[float | None, Field(ge=low, le=high)]
    fields: dict[str, Any] = {}
    for name in spec.numbers:
        fields[name] = (number, None) if name in spec.optional else (number, ...)
    name_or_id = str | Annotated[int, Field(ge=-MAX_NUMBER, le=MAX_NUMBER)] | None
    for name in spec.categorical:
        fields[name] = (name_or_id, None) if name in spec.optional else (name_or_id, ...)
    if spec.group and spec.group not in fields:
        fields[spec.group] = (name_or_id, ...)
    config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)
    return create_model(_title(spec, "Item"), __config__=config, **fields)


def _title(spec: DomainSpec, suffix: str) -> str:
    return "".join(part.title() for part in spec.name.split("-")) + suffix


def domain_request_model(spec: DomainSpec, max_batch: int) -> type[BaseModel]:
    item = domain_item_model(spec)
    return create_model(
        _title(spec, "PredictRequest"),
        __config__=ConfigDict(extra="ignore"),
        items=(list[item], Field(min_length=1, max_length=max_batch)),  # type: ignore[valid-type]
        coverage=(float | None, Field(None, gt=0.0, lt=1.0)),
    )


class DomainPrediction(BaseModel):
    """One item's answer on ``/v1/{domain}/predict``."""

    point: float = Field(description="the median model's estimate")
    upper: float = Field(description="the calibrated upper bound")
    coverage: float = Field(description="the share of outcomes the bound is calibrated to cover")
    model_version: str


class DomainPredictResponse(BaseModel):
    domain: str
    predictions: list[DomainPrediction] = Field(description="one per item, in order")


# A number a stored row may carry in any field (clocks, ids, extra measurements).
SignedNumber = Annotated[float, Field(ge=-MAX_NUMBER, le=MAX_NUMBER)]


class _Sample(BaseModel):
    """A stored row's fields past those the domain names: kept as sent, scalars only."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    __pydantic_extra__: dict[str, SignedNumber | str | bool | None]


def domain_samples_model(spec: DomainSpec, served_bound: str) -> type[BaseModel]:
    """The body of ``POST /v1/{domain}/samples`` as the trainer's ingest checks it, for its
    OpenAPI document: the outcome (``spec.target``) is required; every input may be left out
    (a model learns from rows with gaps) but is of the type and in the range a prediction
    takes (a category may be sent as a number: user 12); ``served_bound`` is the bound the
    job was served, where the caller kept it."""
    low, high = spec.number_range
    number = Annotated[float | None, Field(ge=low, le=high)]
    fields: dict[str, Any] = {name: (number, None) for name in spec.numbers}
    for name in (*spec.categorical, *((spec.group,) if spec.group else ())):
        fields.setdefault(name, (str | SignedNumber | None, None))
    for clock in (spec.time, spec.known_at):
        if clock:
            fields.setdefault(clock, (SignedNumber | None, None))
    fields[spec.target] = (float, Field(ge=0.0, le=MAX_NUMBER))
    fields[served_bound] = (float | None, Field(None, ge=0.0, le=MAX_NUMBER))
    sample = create_model(_title(spec, "Sample"), __base__=_Sample, **fields)
    return create_model(
        _title(spec, "SamplesRequest"),
        __config__=ConfigDict(extra="ignore"),
        items=(list[sample], Field(min_length=1)),
    )
