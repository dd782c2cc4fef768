"""The llm-d routes' fast decoder against the pydantic models it is derived from."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from slocast.serving.schemas import BulkRequest, LatencyFeatures, LatencyRows
from slocast.serving.schemas import _as_struct as as_struct
from tests.conftest import json_with

FIELDS = tuple(LatencyFeatures.model_fields)
ROWS = LatencyRows()  # built once: hypothesis calls the tests many times

# Values a client might send where a number or a name is due: valid ones, and the ones pydantic's
# lax rules accept but msgspec's strict ones do not (12.0 or "12" for an integer, true, null).
odd_values = st.one_of(
    st.integers(-3, 2**70),
    st.floats(-2.0, 1e6, allow_nan=False),
    st.sampled_from([12.0, 0.5, "12", "0.5", " 7 ", "x", "", True, False, None, [], {}]),
)


@st.composite
def rows(draw: st.DrawFn) -> dict[str, Any]:
    """A valid request (optional fields sometimes left out), then a few fields made odd."""
    row: dict[str, Any] = {
        "kv_cache_percentage": draw(st.floats(0.0, 1.0)),
        "input_token_length": draw(st.integers(0, 200_000)),
        "num_request_waiting": draw(st.integers(0, 500)),
        "num_request_running": draw(st.integers(0, 500)),
        "num_tokens_generated": draw(st.integers(0, 4_000)),
        "prefix_cache_score": draw(st.floats(0.0, 1.0)),
        "pod_type": draw(st.sampled_from(["", "prefill", "decode", None])),
        "prefill_tokens_in_flight": draw(st.integers(0, 10**6)),
        "decode_tokens_in_flight": draw(st.integers(0, 10**6)),
    }
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=2)):
        row.pop(name, None)
    for name in draw(st.lists(st.sampled_from([*FIELDS, "unknown"]), max_size=2)):
        row[name] = draw(odd_values)
    return row


def _as_dicts(decoded: list[Any]) -> list[dict[str, tuple[type, Any]]]:
    # Types too: an integer field must not come back as 12.0, nor a float field as 1.
    return [{f: (type(getattr(r, f)), getattr(r, f)) for f in FIELDS} for r in decoded]


@settings(max_examples=300, deadline=None)
@given(st.lists(rows(), max_size=3))
def test_bulk_decoder_answers_as_the_pydantic_model(requests: list[dict[str, Any]]) -> None:
    """Same rows, values and types where pydantic accepts; pydantic's own error where not."""
    raw = json.dumps({"requests": requests}).encode()
    try:
        expected = TypeAdapter(BulkRequest).validate_json(raw).requests
    except ValidationError as refused:
        with pytest.raises(ValidationError) as raised:
            ROWS.bulk(raw)
        assert raised.value.errors() == refused.errors()
        return
    assert _as_dicts(ROWS.bulk(raw)) == _as_dicts(expected)


@settings(max_examples=200, deadline=None)
@given(rows())
def test_one_row_decoder_answers_as_the_pydantic_model(row: dict[str, Any]) -> None:
    raw = json.dumps(row).encode()
    try:
        expected = LatencyFeatures.model_validate_json(raw)
    except ValidationError as refused:
        with pytest.raises(ValidationError) as raised:
            ROWS.one(raw)
        assert raised.value.errors() == refused.errors()
        return
    assert _as_dicts([ROWS.one(raw)]) == _as_dicts([expected])


def test_bodies_that_are_not_json_objects_get_pydantics_errors() -> None:
    for raw in (b"", b"[1, 2]", b"{", b'{"requests": {}}', b"null"):
        with pytest.raises(ValidationError):
            ROWS.bulk(raw)


def test_a_constraint_msgspec_cannot_check_is_refused_when_the_decoder_is_built() -> None:
    class Odd(BaseModel):
        even: int = Field(multiple_of=2)

    with pytest.raises(TypeError, match=r"Odd\.even"):
        as_struct(Odd)


# Numbers no field may hold (past 64 bits, past 2**53, infinite once parsed, NaN, negative) and
# values of the wrong kind, written into the body as raw JSON literals.
EXTREMES = ["1180591620717411303424", "9007199254740994", "1e400", "-1e400", "NaN",
            "Infinity", "-1e9", "-0.5", '"12"', "true", "null", "[]", "{}"]  # fmt: skip


@pytest.fixture(scope="module")
def cold_app() -> Any:
    from slocast.serving import DataPlane, HTTPConfig, create_app

    return create_app(DataPlane(), HTTPConfig(max_batch=100))


async def _post_all(app: Any, bodies: list[tuple[str, str]]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        headers = {"content-type": "application/json"}
        return [await client.post(r, content=b, headers=headers) for r, b in bodies]


@settings(max_examples=150, deadline=None)
@given(row=rows(), field=st.sampled_from(FIELDS), literal=st.sampled_from(EXTREMES))
def test_no_route_answers_a_bad_number_with_a_server_error(
    cold_app: Any, row: dict[str, Any], field: str, literal: str
) -> None:
    one = json_with(row | {field: "@"}, literal)
    bodies = [
        ("/predict", one),
        ("/predict/bulk/strict", f'{{"requests": [{one}]}}'),
        ("/predict/bulk", f'{{"requests": [{one}]}}'),
        ("/v1/llm-ttft/predict", f'{{"items": [{one}]}}'),
    ]
    for (route, body), response in zip(
        bodies, asyncio.run(_post_all(cold_app, bodies)), strict=True
    ):
        assert response.status_code in (200, 422), (route, body, response.text)
        if response.status_code == 422:
            assert response.json()["detail"], response.text
