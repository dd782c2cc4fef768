"""A real gRPC server on a free port, called with grpcio stubs, health and reflection clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from slocast.artifacts import ModelBundle, load_bundle, save_bundle
from slocast.calibration.forecaster import CalibrationParams, fit_on_history
from slocast.datasets import load_dataset
from slocast.models import GBMConfig, QuantileForecaster
from slocast.schema import get_domain
from slocast.serving import DataPlane, LRUCache
from slocast.serving.grpc import SERVICE_NAME, _item_columns, create_grpc_server
from slocast.serving.pb import slocast_pb2 as pb
from slocast.serving.pb import slocast_pb2_grpc as pb_grpc
from tests.conftest import SIZEY, shared_file
from tests.serving.test_http import trace_rows


@pytest.fixture
def channel(llmd_bundles: list[ModelBundle]) -> Iterator[tuple[grpc.Channel, DataPlane]]:
    dataplane = DataPlane(llmd_bundles)
    server, port = create_grpc_server(dataplane, "127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as chan:
        yield chan, dataplane
    server.stop(grace=None)


def item(row: dict[str, Any]) -> Any:
    return pb.Item(numeric={k: float(v) for k, v in row.items() if isinstance(v, int | float)})


def test_predict_batch_and_stream_match_the_data_plane(
    channel: tuple[grpc.Channel, DataPlane],
) -> None:
    chan, dataplane = channel
    stub = pb_grpc.PredictorStub(chan)
    rows = trace_rows(20)
    expected = [p.upper for p in dataplane.predict("llm-ttft", rows)]
    one = stub.Predict(pb.PredictRequest(domain="llm-ttft", item=item(rows[0]))).prediction
    assert one.upper == pytest.approx(expected[0]) and one.coverage == 0.9
    batch = stub.PredictBatch(
        pb.PredictBatchRequest(domain="llm-ttft", items=[item(r) for r in rows])
    )
    assert [p.upper for p in batch.predictions] == pytest.approx(expected)
    stream = stub.PredictStream(
        iter([pb.PredictRequest(domain="llm-ttft", item=item(r)) for r in rows])
    )
    assert [r.prediction.upper for r in stream] == pytest.approx(expected)
    wider = stub.Predict(pb.PredictRequest(domain="llm-ttft", item=item(rows[0]), coverage=0.97))
    assert wider.prediction.upper >= one.upper and wider.prediction.coverage == 0.97


def test_model_info(channel: tuple[grpc.Channel, DataPlane]) -> None:
    stub = pb_grpc.PredictorStub(channel[0])
    info = stub.GetModelInfo(pb.ModelInfoRequest())
    assert {m.domain for m in info.models} == {"llm-ttft", "llm-tpot"}
    assert all(not m.cold_start and m.version for m in info.models)
    # Both bundles replayed half their calibration slice: what their bounds covered there.
    assert all(0.5 < m.observed_coverage <= 1.0 and m.observed_outcomes > 0 for m in info.models)
    assert not any(m.HasField("request_grace") for m in info.models)  # llm-d sends no request
    with pytest.raises(grpc.RpcError) as missing:
        stub.GetModelInfo(pb.ModelInfoRequest(domain="nope"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def _bad_requests() -> list[tuple[Any, str]]:
    row = trace_rows(1)[0]
    missing = pb.Item(numeric={"kv_cache_percentage": 0.1})
    as_text = item({k: v for k, v in row.items() if k != "input_token_length"})
    as_text.categorical["input_token_length"] = "long"
    negative = item(row | {"num_request_waiting": -3})
    infinite = item(row | {"prefill_tokens_in_flight": float("inf")})
    return [
        (pb.PredictBatchRequest(domain="llm-ttft", items=[]), "items"),
        (pb.PredictBatchRequest(domain="llm-ttft", items=[missing]), "input_token_length"),
        (pb.PredictBatchRequest(domain="llm-ttft", items=[as_text]), "input_token_length"),
        (pb.PredictBatchRequest(domain="llm-ttft", items=[negative]), "num_request_waiting"),
        (pb.PredictBatchRequest(domain="llm-ttft", items=[infinite]), "prefill_tokens_in_flight"),
    ]


def test_batch_over_the_limit(llmd_bundles: list[ModelBundle]) -> None:
    server, port = create_grpc_server(DataPlane(llmd_bundles, max_batch=5), "127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as chan:
            items = [item(r) for r in trace_rows(6)]
            with pytest.raises(grpc.RpcError) as error:
                pb_grpc.PredictorStub(chan).PredictBatch(
                    pb.PredictBatchRequest(domain="llm-ttft", items=items)
                )
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "limit of 5" in error.value.details()
    finally:
        server.stop(grace=None)


def test_health_and_reflection(channel: tuple[grpc.Channel, DataPlane]) -> None:
    chan = channel[0]
    health = health_pb2_grpc.HealthStub(chan)
    status = health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME)).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(chan)
    responses = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"slocast.v1.Predictor", "grpc.health.v1.Health"} <= names


def columns_of(rows: list[dict[str, Any]]) -> Any:
    """The rows as a column batch: numbers as numeric columns, text as categorical ones."""
    columns = pb.Columns()
    for name in rows[0]:
        values = [r.get(name) for r in rows]
        if all(isinstance(v, int | float) or v is None for v in values):
            numbers = [float("nan") if v is None else float(v) for v in values]
            columns.numeric[name].values.extend(numbers)
        else:
            columns.categorical[name].values.extend(["" if v is None else str(v) for v in values])
    return columns


def test_column_batches_give_the_item_batches_bounds(
    channel: tuple[grpc.Channel, DataPlane],
) -> None:
    chan, dataplane = channel
    stub = pb_grpc.PredictorStub(chan)
    rows = trace_rows(300)
    expected = dataplane.predict("llm-tpot", rows, 0.8)  # one dict per job, in process
    # A batch this large goes the columns' way inside the server, sent as items or columns.
    items = stub.PredictBatch(
        pb.PredictBatchRequest(domain="llm-tpot", items=[item(r) for r in rows], coverage=0.8)
    ).predictions
    columns = stub.PredictBatch(
        pb.PredictBatchRequest(domain="llm-tpot", columns=columns_of(rows), coverage=0.8)
    ).columns
    for got in ([p.upper for p in items], list(columns.upper)):
        assert got == pytest.approx([p.upper for p in expected])
    for got in ([p.point for p in items], list(columns.point)):
        assert got == pytest.approx([p.point for p in expected])
    assert {(p.coverage, p.model_version) for p in items} == {(0.8, expected[0].model_version)}
    assert columns.coverage == 0.8 and columns.model_version == expected[0].model_version
    assert len(set(columns.upper)) > 50
    # Hits and misses add up to the predictions, whichever way a batch went.
    registry = dataplane.metrics.registry
    counts = {
        name: registry.get_sample_value(f"slocast_{name}_total", {"domain": "llm-tpot"})
        for name in ("predictions", "cache_hits", "cache_misses")
    }
    assert counts["predictions"] == 900 == counts["cache_hits"] + counts["cache_misses"]


def test_a_large_item_batch_with_a_bad_item_names_it(
    channel: tuple[grpc.Channel, DataPlane],
) -> None:
    stub = pb_grpc.PredictorStub(channel[0])
    items = [item(r) for r in trace_rows(100)]
    del items[70].numeric["input_token_length"]
    with pytest.raises(grpc.RpcError) as error:
        stub.PredictBatch(pb.PredictBatchRequest(domain="llm-ttft", items=items))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "[70].input_token_length" in error.value.details()


def test_column_batches_with_categories_groups_and_requests(tmp_path: Path) -> None:
    """Nextflow tasks: process (group, category), requested memory, missing values."""
    data = load_dataset(f"nextflow:{shared_file(SIZEY.format('chipseq'))}")
    base = QuantileForecaster(data.spec, 0.9, "lightgbm", GBMConfig(n_estimators=40))
    forecaster, _, _ = fit_on_history(data.frame, base, CalibrationParams(), 0.2)
    save_bundle(forecaster, tmp_path / "b", {}, {}, compile_models=False)
    dataplane = DataPlane([load_bundle(tmp_path / "b")], LRUCache(0))
    spec = data.spec
    inputs = [*spec.features, *[c for c in (spec.group, spec.user_request) if c]]
    rows = data.frame[list(dict.fromkeys(inputs))].iloc[-400:].to_dict("records")
    rows[0][spec.categorical[0]] = "a-process-never-seen"
    expected = dataplane.predict(spec.name, rows)
    as_items = [
        pb.Item(
            numeric={k: float(v) for k, v in r.items() if isinstance(v, int | float) and v == v},
            categorical={k: v for k, v in r.items() if isinstance(v, str)},
        )
        for r in rows
    ]
    complete = [i for i, r in enumerate(rows) if all(v == v for v in r.values())]
    assert 100 < len(complete) < len(rows)  # both ways through the server, below
    server, port = create_grpc_server(dataplane, "127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as chan:
            stub = pb_grpc.PredictorStub(chan)
            got = stub.PredictBatch(
                pb.PredictBatchRequest(domain=spec.name, columns=columns_of(rows))
            ).columns
            # Items with a value missing go one dict per job; complete ones as columns.
            mixed = stub.PredictBatch(pb.PredictBatchRequest(domain=spec.name, items=as_items))
            whole = stub.PredictBatch(
                pb.PredictBatchRequest(domain=spec.name, items=[as_items[i] for i in complete])
            )
    finally:
        server.stop(grace=None)
    for uppers, points, wanted in (
        (got.upper, got.point, expected),
        ([p.upper for p in mixed.predictions], [p.point for p in mixed.predictions], expected),
        (
            [p.upper for p in whole.predictions],
            [p.point for p in whole.predictions],
            [expected[i] for i in complete],
        ),
    ):
        assert list(uppers) == pytest.approx([p.upper for p in wanted])
        assert list(points) == pytest.approx([p.point for p in wanted])


def test_item_columns_only_for_complete_items() -> None:
    spec = get_domain("task-memory")
    full = {"cpus": 2.0, "time_limit": 60.0, "memory": 4e9, "rchar": 1e6}
    good = pb.Item(numeric=full, categorical={"process": "ALIGN"})
    columns = _item_columns([good, good], spec)
    assert columns is not None
    numeric, categorical = columns
    assert set(numeric) == set(spec.numbers) and list(numeric["memory"]) == [4e9, 4e9]
    assert np.isnan(numeric["attempt"]).all()  # optional: left out, it is missing
    assert categorical == {"process": ["ALIGN", "ALIGN"]}
    no_rchar = pb.Item(numeric={**full, "rchar": float("nan")}, categorical={"process": "A"})
    del no_rchar.numeric["rchar"]
    for bad in (
        no_rchar,
        pb.Item(numeric={**full, "rchar": float("nan")}, categorical={"process": "A"}),
        pb.Item(numeric=full, categorical={"process": ""}),
        pb.Item(numeric=full),
    ):
        assert _item_columns([good, bad], spec) is None


def _bad_columns() -> list[tuple[Any, str]]:
    rows = trace_rows(3)
    uneven = columns_of(rows)
    uneven.numeric["input_token_length"].values.append(5.0)
    missing = columns_of(rows)
    del missing.numeric["num_request_waiting"]
    as_text = columns_of(rows)
    del as_text.numeric["kv_cache_percentage"]
    as_text.categorical["kv_cache_percentage"].values.extend(["0.1"] * 3)
    both = pb.PredictBatchRequest(
        domain="llm-ttft", columns=columns_of(rows), items=[item(rows[0])]
    )
    negative = columns_of(rows)
    negative.numeric["input_token_length"].values[1] = -1.0
    return [
        (pb.PredictBatchRequest(domain="llm-ttft", columns=negative), "input_token_length"),
        (pb.PredictBatchRequest(domain="llm-ttft", columns=uneven), "input_token_length"),
        (pb.PredictBatchRequest(domain="llm-ttft", columns=missing), "num_request_waiting"),
        (pb.PredictBatchRequest(domain="llm-ttft", columns=as_text), "kv_cache_percentage"),
        (pb.PredictBatchRequest(domain="llm-ttft", columns=pb.Columns()), "columns"),
        (both, "columns"),
    ]


@pytest.mark.parametrize(("request_", "field"), [*_bad_requests(), *_bad_columns()])
def test_invalid_input_is_invalid_argument_naming_the_field(
    channel: tuple[grpc.Channel, DataPlane], request_: Any, field: str
) -> None:
    stub = pb_grpc.PredictorStub(channel[0])
    with pytest.raises(grpc.RpcError) as error:
        stub.PredictBatch(request_)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in error.value.details()


def test_calls_are_counted_and_timed_by_method_and_code(
    channel: tuple[grpc.Channel, DataPlane],
) -> None:
    """The metrics port counted predictions but no requests: a failing or slow method did not
    show, as it does by route and status over HTTP."""
    chan, dataplane = channel
    stub = pb_grpc.PredictorStub(chan)
    rows = trace_rows(5)
    for row in rows[:3]:
        stub.Predict(pb.PredictRequest(domain="llm-ttft", item=item(row)))
    bad = item(rows[0])
    del bad.numeric["input_token_length"]
    for request in (
        pb.PredictRequest(domain="llm-ttft", item=bad),
        pb.PredictRequest(domain="nope", item=item(rows[0])),
    ):
        with pytest.raises(grpc.RpcError):
            stub.Predict(request)
    list(
        stub.PredictStream(iter([pb.PredictRequest(domain="llm-ttft", item=item(r)) for r in rows]))
    )
    sample = dataplane.metrics.registry.get_sample_value
    predict, stream = f"/{SERVICE_NAME}/Predict", f"/{SERVICE_NAME}/PredictStream"
    assert sample("slocast_requests_total", {"route": predict, "status": "OK"}) == 3
    assert sample("slocast_requests_total", {"route": predict, "status": "INVALID_ARGUMENT"}) == 1
    assert sample("slocast_requests_total", {"route": predict, "status": "NOT_FOUND"}) == 1
    assert sample("slocast_requests_total", {"route": stream, "status": "OK"}) == 1
    assert sample("slocast_request_latency_seconds_count", {"route": predict}) == 5
    assert sample("slocast_predictions_total", {"domain": "llm-ttft"}) == 3 + len(rows)
