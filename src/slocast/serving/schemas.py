"""Wire models (pydantic) of the HTTP API: llm-d's contract and slocast's generic routes."""

from __future__ import annotations

from typing import Annotated, Any, NotRequired, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model
from typing_extensions import TypedDict  # pydantic needs this one below Python 3.12

from slocast.schema import DomainSpec

__all__ = [
    "BulkRequest",
    "LatencyFeatures",
    "LatencyRows",
    "LooseBulkRequest",
    "domain_item_model",
    "domain_request_model",
]


class LatencyFeatures(BaseModel):
    """One llm-d prediction request (and the feature part of a training row)."""

    model_config = ConfigDict(extra="ignore")

    kv_cache_percentage: float = Field(ge=0.0, le=1.0)
    input_token_length: int = Field(ge=0)
    num_request_waiting: int = Field(ge=0)
    num_request_running: int = Field(ge=0)
    num_tokens_generated: int = Field(ge=0)
    prefix_cache_score: float = Field(ge=0.0, le=1.0)
    pod_type: str | None = ""
    prefill_tokens_in_flight: int = Field(0, ge=0)
    decode_tokens_in_flight: int = Field(0, ge=0)
    encoder_matched_size: int = Field(0, ge=0)
    encoder_input_size: int = Field(0, ge=0)


class BulkRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    requests: list[LatencyFeatures] = Field(min_length=1, max_length=10_000)


class LooseBulkRequest(BaseModel):
    """``/predict/bulk``: items are validated one by one, so a bad one does not sink the rest."""

    model_config = ConfigDict(extra="ignore")

    requests: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)


def _as_typed_dict(model: type[BaseModel]) -> Any:
    """A TypedDict with ``model``'s fields, types and constraints (nested models included)."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation: Any = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            annotation = _as_typed_dict(annotation)
        elif get_origin(annotation) is list and issubclass(get_args(annotation)[0], BaseModel):
            annotation = list[_as_typed_dict(get_args(annotation)[0])]  # type: ignore[misc]
        # pydantic fills a TypedDict field's default when the key is absent, as the model does.
        default = () if info.is_required() else (Field(default=info.default),)
        if info.metadata or default:
            annotation = Annotated[(annotation, *info.metadata, *default)]
        fields[name] = annotation if info.is_required() else NotRequired[annotation]
    return TypedDict(f"{model.__name__}Dict", fields)  # type: ignore[operator]


class LatencyRows:
    """llm-d request rows validated as plain dicts, defaults filled in.

    The same fields, types, bounds, defaults and error locations as :class:`LatencyFeatures`
    and :class:`BulkRequest` (derived from them), without building a model object per row: a
    1,000-row bulk body validates in well under half the time. The prediction routes' hot path.
    """

    def __init__(self) -> None:
        self._one = TypeAdapter(_as_typed_dict(LatencyFeatures))
        self._bulk = TypeAdapter(_as_typed_dict(BulkRequest))

    def one(self, raw: bytes) -> dict[str, Any]:
        row: dict[str, Any] = self._one.validate_json(raw)
        return row

    def bulk(self, raw: bytes) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._bulk.validate_json(raw)["requests"]
        return rows


def domain_item_model(spec: DomainSpec) -> type[BaseModel]:
    """A strict item model for a domain: numbers must be numbers, categories strings.

    Unknown fields are ignored; optional features (history a caller may not keep) may be left out.
    """
    fields: dict[str, Any] = {}
    for name in spec.numeric:
        fields[name] = (float | None, None) if name in spec.optional else (float | None, ...)
    for name in spec.categorical:
        fields[name] = (str | None, None) if name in spec.optional else (str | None, ...)
    if spec.user_request and spec.user_request not in fields:
        fields[spec.user_request] = (float | None, ...)
    if spec.group and spec.group not in fields:
        fields[spec.group] = (str | None, ...)
    config = ConfigDict(extra="ignore", strict=True)
    title = "".join(part.title() for part in spec.name.split("-")) + "Item"
    return create_model(title, __config__=config, **fields)


def domain_request_model(spec: DomainSpec, max_batch: int) -> type[BaseModel]:
    item = domain_item_model(spec)
    title = "".join(part.title() for part in spec.name.split("-")) + "PredictRequest"
    return create_model(
        title,
        __config__=ConfigDict(extra="ignore"),
        items=(list[item], Field(min_length=1, max_length=max_batch)),  # type: ignore[valid-type]
        coverage=(float | None, Field(None, gt=0.0, lt=1.0)),
    )
