"""A real gRPC server on a free port, called with grpcio stubs, health and reflection clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from slocast.artifacts import ModelBundle
from slocast.serving import DataPlane
from slocast.serving.grpc import SERVICE_NAME, create_grpc_server
from slocast.serving.pb import slocast_pb2 as pb
from slocast.serving.pb import slocast_pb2_grpc as pb_grpc
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
    with pytest.raises(grpc.RpcError) as missing:
        stub.GetModelInfo(pb.ModelInfoRequest(domain="nope"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def _bad_requests() -> list[tuple[Any, str]]:
    row = trace_rows(1)[0]
    missing = pb.Item(numeric={"kv_cache_percentage": 0.1})
    as_text = item({k: v for k, v in row.items() if k != "input_token_length"})
    as_text.categorical["input_token_length"] = "long"
    return [
        (pb.PredictBatchRequest(domain="llm-ttft", items=[]), "items"),
        (pb.PredictBatchRequest(domain="llm-ttft", items=[missing]), "input_token_length"),
        (pb.PredictBatchRequest(domain="llm-ttft", items=[as_text]), "input_token_length"),
    ]


@pytest.mark.parametrize(("request_", "field"), _bad_requests())
def test_invalid_input_is_invalid_argument_naming_the_field(
    channel: tuple[grpc.Channel, DataPlane], request_: Any, field: str
) -> None:
    stub = pb_grpc.PredictorStub(channel[0])
    with pytest.raises(grpc.RpcError) as error:
        stub.PredictBatch(request_)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in error.value.details()


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
