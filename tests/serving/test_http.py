"""The HTTP API in process (httpx over ASGI): llm-d contract, generic routes, errors, metrics."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slocast.artifacts import ModelBundle, load_bundle, save_bundle
from slocast.calibration.forecaster import CalibrationParams, fit_on_history
from slocast.datasets import load_dataset
from slocast.models import GBMConfig, QuantileForecaster
from slocast.serving import DataPlane, HTTPConfig, LRUCache, create_app
from slocast.serving.http import prediction_array, prediction_objects
from tests.conftest import LLMD, SYNTH_SPEC, json_with, late_jobs_frame, synthetic_frame

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def trace_rows(n: int) -> list[dict[str, Any]]:
    with gzip.open(LLMD / "chatbot-synthetic-h200.jsonl.gz", "rt") as handle:
        rows = [json.loads(line) for _, line in zip(range(n), handle, strict=False)]
    for row in rows:
        row.pop("actual_ttft_ms"), row.pop("actual_tpot_ms")
    return rows


def client_for(dataplane: DataPlane, fast_path: bool = True) -> httpx.AsyncClient:
    app = create_app(dataplane, HTTPConfig(max_batch=10_000, fast_path=fast_path))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_cold_start_serves_positive_predictions_and_is_ready() -> None:
    async with client_for(DataPlane()) as client:
        assert (await client.get("/readyz")).status_code == 200
        body = (await client.post("/predict", json=trace_rows(1)[0])).json()
        assert body["ttft_ms"] > 0 and body["tpot_ms"] > 0
        assert body["objective_type"] == "quantile" and body["quantile"] == 0.9
        status = (await client.get("/status")).json()
        assert status["models_exist"]["ttft_model"] is False
        models = (await client.get("/v1/models")).json()["models"]
        assert all(m["observed_coverage"] is None and m["observed_outcomes"] == 0 for m in models)


async def test_models_say_where_bounds_stop_past_the_request(tmp_path: Path) -> None:
    base = QuantileForecaster(SYNTH_SPEC, 0.9, "lightgbm", GBMConfig(n_estimators=30))
    forecaster, _, _ = fit_on_history(late_jobs_frame(), base, CalibrationParams(), 0.25)
    save_bundle(forecaster, tmp_path / "b", provenance={}, metrics={})
    async with client_for(DataPlane([load_bundle(tmp_path / "b")])) as client:
        models = (await client.get("/v1/models")).json()["models"]
    (synthetic,) = [m for m in models if m["domain"] == "synthetic"]
    assert forecaster.request_grace and synthetic["request_grace"] == forecaster.request_grace


async def test_a_category_sent_as_an_integer_names_it_too(tmp_path: Path) -> None:
    frame = synthetic_frame(600)
    frame["g"] = frame["g"].map({"a": "12", "b": "7", "c": "3"})
    base = QuantileForecaster(SYNTH_SPEC, 0.9, "lightgbm", GBMConfig(n_estimators=10))
    forecaster, _, _ = fit_on_history(frame, base, CalibrationParams(), 0.25)
    save_bundle(forecaster, tmp_path / "b", provenance={}, metrics={})
    job = {"x1": 5.0, "x2": 0.0, "request": 100.0}
    async with client_for(DataPlane([load_bundle(tmp_path / "b")])) as client:

        async def upper(group: object) -> Any:
            response = await client.post(
                "/v1/synthetic/predict", json={"items": [job | {"g": group}]}
            )
            return response.json()["predictions"][0]["upper"] if response.is_success else response

        assert await upper(7) == await upper("7") != await upper("12") == await upper(12)
        for refused in (True, 7.0, [7]):
            response = await upper(refused)
            assert response.status_code == 422 and "g" in response.json()["detail"][0]["loc"]


async def test_predict_uses_trained_bundles(llmd_bundles: list[ModelBundle]) -> None:
    dataplane = DataPlane(llmd_bundles)
    rows = trace_rows(50)
    async with client_for(dataplane) as client:
        one = (await client.post("/predict", json=rows[0])).json()
        expected = dataplane.predict("llm-ttft", [rows[0]])[0].upper
        assert one["ttft_ms"] == pytest.approx(expected)
        bulk = (await client.post("/predict/bulk/strict", json={"requests": rows})).json()
        assert bulk["total_requests"] == bulk["successful_predictions"] == 50
        assert bulk["failed_predictions"] == 0
        assert bulk["predictions"][0]["ttft_ms"] == pytest.approx(one["ttft_ms"])
        assert all(p["ttft_ms"] > 0 and p["tpot_ms"] > 0 for p in bulk["predictions"])
        status = (await client.get("/status")).json()
        assert status["models_exist"]["ttft_model"] is True


@pytest.mark.parametrize("trained", [False, True])
async def test_tokens_in_flight_are_used_on_every_route(
    trained: bool, llmd_bundles: list[ModelBundle]
) -> None:
    # llm-d's bug: /predict ignored the in-flight fields. Here they reach the model on every route.
    row = trace_rows(1)[0]
    sweep = [row | {"prefill_tokens_in_flight": t} for t in range(0, 3_000_000, 150_000)]
    async with client_for(DataPlane(llmd_bundles if trained else [])) as client:
        single = [(await client.post("/predict", json=r)).json()["ttft_ms"] for r in sweep]
        bulk = (await client.post("/predict/bulk/strict", json={"requests": sweep})).json()
    assert len(set(single)) > 1
    assert [p["ttft_ms"] for p in bulk["predictions"]] == pytest.approx(single)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"prefix_cache_score": None}, "prefix_cache_score"),
        ({"num_request_waiting": -1}, "num_request_waiting"),
        ({"kv_cache_percentage": "lots"}, "kv_cache_percentage"),
        ({"prefill_tokens_in_flight": -5}, "prefill_tokens_in_flight"),
    ],
)
async def test_one_bad_item_rejects_the_batch_naming_it(change: dict[str, Any], field: str) -> None:
    rows = trace_rows(3)
    rows[2] = {k: v for k, v in (rows[2] | change).items() if v is not None}
    async with client_for(DataPlane()) as client:
        response = await client.post("/predict/bulk/strict", json={"requests": rows})
    assert response.status_code == 422
    locs = [e["loc"] for e in response.json()["detail"]]
    assert ["body", "requests", 2, field] in locs


@pytest.mark.parametrize(
    ("literal", "field"),
    [
        ("1180591620717411303424", "num_request_waiting"),  # 2**70: past any 64-bit integer
        ("9007199254740994", "input_token_length"),  # 2**53 + 2
        ("1e400", "kv_cache_percentage"),  # infinite once parsed
        ("-1e9", "prefill_tokens_in_flight"),
    ],
)
async def test_out_of_range_numbers_are_422_naming_the_field_on_every_route(
    literal: str, field: str
) -> None:
    row = trace_rows(1)[0]
    one = json_with(row | {field: "@"}, literal).encode()
    headers = {"content-type": "application/json"}
    async with client_for(DataPlane()) as client:
        for route, body, loc in [
            ("/predict", one, ["body", field]),
            ("/predict/bulk/strict", b'{"requests": [%s]}' % one, ["body", "requests", 0, field]),
            ("/v1/llm-ttft/predict", b'{"items": [%s]}' % one, ["body", "items", 0, field]),
        ]:
            response = await client.post(route, content=body, headers=headers)
            assert response.status_code == 422, (route, response.text)
            assert loc in [e["loc"] for e in response.json()["detail"]], route
        loose = await client.post(
            "/predict/bulk", content=b'{"requests": [%s]}' % one, headers=headers
        )
    assert loose.status_code == 200  # the bad item is reported, with the request echoed
    assert loose.json()["failed_predictions"] == 1 and field in loose.json()["errors"][0]["error"]


async def test_a_body_past_the_cap_is_refused_before_it_is_read() -> None:
    plane = DataPlane()
    app = create_app(plane, HTTPConfig(max_body_bytes=2_000))
    transport = httpx.ASGITransport(app=app)
    rows = trace_rows(20)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        small = await client.post("/predict/bulk/strict", json={"requests": rows[:2]})
        assert small.status_code == 200
        for route in ("/predict/bulk/strict", "/predict/bulk", "/v1/llm-ttft/predict"):
            big = await client.post(route, json={"requests": rows, "items": rows})
            assert big.status_code == 413, (route, big.text)
            assert "exceeds 2000" in big.json()["detail"]

        # No declared length (chunked): it cannot be sized before it is read.
        async def stream() -> Any:
            yield json.dumps(rows[0]).encode()

        chunked = await client.post(
            "/predict", content=stream(), headers={"content-type": "application/json"}
        )
        assert chunked.status_code == 411
        for length in ("abc", "-5", "1e3"):
            malformed = await client.post(
                "/predict",
                content=json.dumps(rows[0]).encode(),
                headers={"content-type": "application/json", "content-length": length},
            )
            assert malformed.status_code == 400, (length, malformed.text)
            assert "Content-Length must be a whole number" in malformed.json()["detail"]
        assert (await client.get("/healthz")).status_code == 200
    counted = plane.metrics.registry.get_sample_value
    assert (
        counted("slocast_requests_total", {"route": "/predict/bulk/strict", "status": "413"}) == 1
    )
    assert counted("slocast_requests_total", {"route": "/predict", "status": "411"}) == 1


async def test_json_nested_past_the_decoders_depth_is_a_422() -> None:
    async with client_for(DataPlane()) as client:
        for route in ("/predict", "/predict/bulk/strict"):
            response = await client.post(
                route, content=b'{"a": ' * 5000, headers={"content-type": "application/json"}
            )
            assert response.status_code == 422, (route, response.text)


async def test_batch_limits() -> None:
    async with client_for(DataPlane()) as client:
        assert (await client.post("/predict/bulk/strict", json={"requests": []})).status_code == 422
        big = {"requests": trace_rows(1) * 10_001}
        assert (await client.post("/predict/bulk/strict", json=big)).status_code == 422


async def test_loose_bulk_reports_bad_items_and_predicts_the_rest() -> None:
    rows = trace_rows(3)
    rows[1] = {"input_token_length": 5}
    async with client_for(DataPlane()) as client:
        body = (await client.post("/predict/bulk", json={"requests": rows})).json()
    assert body["successful_predictions"] == 2 and body["failed_predictions"] == 1
    assert body["predictions"][1] is None and body["errors"][0]["index"] == 1


async def test_generic_route_validates_strictly_and_ignores_unknown_fields(
    llmd_bundles: list[ModelBundle],
) -> None:
    rows = trace_rows(4)
    async with client_for(DataPlane(llmd_bundles)) as client:
        ok = await client.post(
            "/v1/llm-ttft/predict",
            json={"items": [r | {"junk": 1} for r in rows], "coverage": 0.95},
        )
        assert ok.status_code == 200, ok.text
        predictions = ok.json()["predictions"]
        assert len(predictions) == 4
        assert all(0 <= p["point"] <= p["upper"] and p["coverage"] == 0.95 for p in predictions)
        reordered = {"items": [dict(reversed(list(r.items()))) for r in rows], "coverage": 0.95}
        again = (await client.post("/v1/llm-ttft/predict", json=reordered)).json()["predictions"]
        assert again == predictions
        bad = [*rows[:2], rows[2] | {"input_token_length": "long"}]
        response = await client.post("/v1/llm-ttft/predict", json={"items": bad})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"][:4] == ["body", "items", 2, "input_token_length"]
        missing = [{k: v for k, v in rows[0].items() if k != "input_token_length"}]
        assert (
            await client.post("/v1/llm-ttft/predict", json={"items": missing})
        ).status_code == 422
        assert (await client.post("/v1/llm-ttft/predict", json={"items": []})).status_code == 422
        unknown = await client.post("/v1/no-such-domain/predict", json={"items": rows})
        assert unknown.status_code == 404
        models = (await client.get("/v1/models")).json()["models"]
        assert {m["domain"] for m in models} == {"llm-ttft", "llm-tpot"}
        assert all(0.5 < m["observed_coverage"] <= 1.0 for m in models)
        assert all(m["observed_outcomes"] > 0 and m["request_grace"] is None for m in models)


async def test_cache_hits_and_metrics(llmd_bundles: list[ModelBundle]) -> None:
    cache = LRUCache(1000)
    dataplane = DataPlane(llmd_bundles, cache)
    rows = trace_rows(10)
    async with client_for(dataplane) as client:
        first = (await client.post("/predict/bulk/strict", json={"requests": rows})).json()
        second = (await client.post("/predict/bulk/strict", json={"requests": rows})).json()
        text = (await client.get("/metrics")).text
    assert [p["ttft_ms"] for p in first["predictions"]] == [
        p["ttft_ms"] for p in second["predictions"]
    ]
    assert len(cache) == 20  # 10 rows x (ttft, tpot)
    assert 'slocast_cache_hits_total{domain="llm-ttft"} 10.0' in text
    assert 'slocast_requests_total{route="/predict/bulk/strict",status="200"} 2.0' in text
    assert "slocast_model_info" in text


async def test_docs_are_served_and_follow_the_loaded_models(tmp_path: Path) -> None:
    """The generic route is documented once per loaded domain, with that domain's items."""
    dataplane = DataPlane()
    async with client_for(dataplane) as client:
        assert (await client.get("/docs")).status_code == 200
        spec = (await client.get("/openapi.json")).json()
        assert "/predict/bulk/strict" in spec["paths"]
        assert "/v1/{domain}/predict" not in spec["paths"]
        assert "/v1/synthetic/predict" not in spec["paths"]
        body = spec["paths"]["/v1/llm-ttft/predict"]["post"]["requestBody"]["content"]

        def resolve(ref: str) -> dict[str, Any]:
            return spec["components"]["schemas"][ref.removeprefix("#/components/schemas/")]

        request = resolve(body["application/json"]["schema"]["$ref"])
        item = resolve(request["properties"]["items"]["items"]["$ref"])
        assert "num_request_waiting" in item["required"]

        base = QuantileForecaster(SYNTH_SPEC, 0.9, "lightgbm", GBMConfig(n_estimators=10))
        forecaster, _, _ = fit_on_history(late_jobs_frame(), base, CalibrationParams(), 0.25)
        save_bundle(forecaster, tmp_path / "b", provenance={}, metrics={})
        dataplane.swap(load_bundle(tmp_path / "b"))
        spec = (await client.get("/openapi.json")).json()
        answer = spec["paths"]["/v1/synthetic/predict"]["post"]["responses"]["200"]
        assert answer["content"]["application/json"]["schema"]["$ref"].endswith("PredictResponse")
        assert set(SYNTH_SPEC.numbers) <= set(
            spec["components"]["schemas"]["SyntheticItem"]["properties"]
        )


def _comparable(response: httpx.Response) -> tuple[int, Any]:
    """Status and body without the fields that differ by clock."""
    body = response.json()
    for item in [body, *(body.get("predictions") or [])] if isinstance(body, dict) else []:
        for key in ("predicted_at", "processing_time_ms", "last_model_load"):
            (item or {}).pop(key, None)
    return response.status_code, body


async def test_fast_path_and_fastapi_routes_answer_alike(llmd_bundles: list[ModelBundle]) -> None:
    """The hot routes served from ASGI and through FastAPI: same statuses, bodies, field
    names in errors, and metrics series."""
    rows = trace_rows(5)
    bad = [*rows[:2], rows[2] | {"num_request_waiting": -1}]
    # The in-flight token counts are optional (default 0): left out, they must read as 0.
    optional = ("prefill_tokens_in_flight", "decode_tokens_in_flight")
    zeroed = rows[1] | dict.fromkeys(optional, 0)
    bare = {k: v for k, v in zeroed.items() if k not in optional}
    calls: list[tuple[str, Any]] = [
        ("/predict", rows[0]),
        ("/predict", zeroed),
        ("/predict/bulk/strict", {"requests": [bare]}),
        ("/predict", rows[0] | {"kv_cache_percentage": "lots"}),
        ("/predict", {"input_token_length": 5}),
        ("/predict/bulk/strict", {"requests": rows}),
        ("/predict/bulk/strict", {"requests": bad}),
        ("/predict/bulk/strict", {"requests": []}),
        ("/v1/llm-ttft/predict", {"items": rows, "coverage": 0.8}),
        ("/v1/llm-tpot/predict", {"items": [rows[0] | {"input_token_length": "x"}]}),
        ("/v1/no-such-domain/predict", {"items": rows}),
    ]
    answers = {}
    for fast in (True, False):
        dataplane = DataPlane(llmd_bundles)
        async with client_for(dataplane, fast_path=fast) as client:
            answers[fast] = [_comparable(await client.post(path, json=b)) for path, b in calls]
            text = (await client.get("/metrics")).text
        assert 'slocast_requests_total{route="/predict",status="422"} 2.0' in text
        assert 'slocast_requests_total{route="/v1/{domain}/predict",status="404"} 1.0' in text
    statuses = [200, 200, 200, 422, 422, 200, 422, 422, 200, 422, 404]
    assert [status for status, _ in answers[True]] == statuses
    with_zeros, left_out = answers[True][1][1], answers[True][2][1]["predictions"][0]
    assert (with_zeros["ttft_ms"], with_zeros["tpot_ms"]) == (
        left_out["ttft_ms"],
        left_out["tpot_ms"],
    )
    for (status, fast), (_, slow) in zip(answers[True], answers[False], strict=True):
        if status == 422:
            assert [e["loc"] for e in fast["detail"]] == [e["loc"] for e in slow["detail"]]
        else:
            assert fast == slow


async def test_batches_above_the_cache_limit_are_computed(llmd_bundles: list[ModelBundle]) -> None:
    cache = LRUCache(1000)
    dataplane = DataPlane(llmd_bundles, cache, cache_max_batch=8)
    rows = trace_rows(10)
    async with client_for(dataplane) as client:
        big = (await client.post("/predict/bulk/strict", json={"requests": rows})).json()
        small = (await client.post("/predict/bulk/strict", json={"requests": rows[:8]})).json()
        again = (await client.post("/predict/bulk/strict", json={"requests": rows[:8]})).json()
        text = (await client.get("/metrics")).text
    assert len(cache) == 16  # only the 8-row batch went in, for ttft and tpot
    for route in ("ttft_ms", "tpot_ms"):
        bounds = [[p[route] for p in r["predictions"]] for r in (big, small, again)]
        assert bounds[0][:8] == bounds[1] == bounds[2]
    assert 'slocast_cache_hits_total{domain="llm-ttft"} 8.0' in text
    assert 'slocast_cache_misses_total{domain="llm-ttft"} 18.0' in text


async def test_pod_type_of_a_disaggregated_trace_reaches_the_model(
    tmp_path: Path, llmd_bundles: list[ModelBundle]
) -> None:
    # A prefill/decode deployment's trace: the same request state costs three times the TTFT
    # on a decode pod. pod_type is a feature only where it varies (dropped from other traces).
    with gzip.open(LLMD / "chatbot-synthetic-h200.jsonl.gz", "rt") as handle:
        rows = [json.loads(line) for line in handle]
    for i, row in enumerate(rows):
        row["pod_type"] = "decode" if i % 2 else "prefill"
        row["actual_ttft_ms"] *= 3.0 if i % 2 else 1.0
    trace = tmp_path / "pd.jsonl"
    trace.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_dataset(f"llmd-ttft:{trace}")
    assert "pod_type" in data.spec.categorical
    base = QuantileForecaster(data.spec, 0.9, "lightgbm", GBMConfig(n_estimators=60))
    forecaster, _, _ = fit_on_history(data.frame, base, CalibrationParams(), 0.2)
    save_bundle(forecaster, tmp_path / "ttft", provenance={}, metrics={})
    tpot = [b for b in llmd_bundles if b.spec.name == "llm-tpot"]
    dataplane = DataPlane([load_bundle(tmp_path / "ttft"), *tpot])
    state = trace_rows(200)[100:]
    async with client_for(dataplane) as client:
        bounds = {}
        for pod in ("prefill", "decode"):
            body = {"requests": [r | {"pod_type": pod} for r in state]}
            answer = (await client.post("/predict/bulk/strict", json=body)).json()
            bounds[pod] = np.array([p["ttft_ms"] for p in answer["predictions"]])
        one = (await client.post("/predict", json=state[0] | {"pod_type": "decode"})).json()
    assert np.median(bounds["decode"] / bounds["prefill"]) > 2.0
    assert one["ttft_ms"] == pytest.approx(bounds["decode"][0])


@settings(max_examples=200, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.floats(), st.floats()), min_size=1, max_size=40),
    shared=st.dictionaries(st.text(), st.one_of(st.text(), st.floats(), st.none()), max_size=3),
)
def test_the_prediction_array_is_the_objects_encoded(
    pairs: list[tuple[float, float]], shared: dict[str, Any]
) -> None:
    """The bulk route's fast encoding writes the very bytes the per-row objects encode to:
    NaN and infinities as null, every float as orjson writes it, any repeated fields (even
    ones holding the punctuation it rewrites)."""
    ttft, tpot = (list(column) for column in zip(*pairs, strict=True))
    expected = orjson.dumps(prediction_objects(ttft, tpot, shared))
    assert orjson.dumps(prediction_array(ttft, tpot, shared)) == expected
