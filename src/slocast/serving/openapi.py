"""The OpenAPI document of a route whose body depends on a path parameter.

``POST /v1/{domain}/predict`` validates its items against the loaded model's own feature
schema (the trainer's ``/v1/{domain}/samples`` against the domain's), which FastAPI cannot see
from the route's signature. The document instead lists one operation per domain
(``/v1/llm-ttft/predict``, ...) with that domain's exact request body, so ``/docs``, client
generators and schema-driven tests see what the route accepts.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

__all__ = ["document_per_value", "per_value_operations"]

_REF = "#/components/schemas/{model}"


def per_value_operations(
    document: dict[str, Any],
    template: str,
    parameter: str,
    bodies: Mapping[str, type[BaseModel]],
    response: type[BaseModel],
) -> dict[str, Any]:
    """Replace ``template``'s POST operation in ``document`` by one operation per value of the
    path ``parameter``, each with its request model from ``bodies`` and ``response`` as its
    success answer. Returns ``document``, changed in place."""
    operation = document["paths"].pop(template)["post"]
    keyed: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        *((model, "validation") for model in bodies.values()),
        (response, "serialization"),
    ]
    refs, definitions = models_json_schema(keyed, ref_template=_REF)
    document.setdefault("components", {}).setdefault("schemas", {}).update(
        definitions.get("$defs", {})
    )
    for value, model in bodies.items():
        concrete = copy.deepcopy(operation)
        concrete["operationId"] = f"{operation['operationId']}_{value.replace('-', '_')}"
        concrete["summary"] = f"{operation.get('summary', '')} ({value})".strip()
        concrete["parameters"] = [
            p for p in concrete.get("parameters", []) if p["name"] != parameter
        ]
        concrete["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[model, "validation"]}},
        }
        success = next(code for code in concrete["responses"] if code.startswith("2"))
        concrete["responses"][success]["content"]["application/json"]["schema"] = refs[
            response, "serialization"
        ]
        document["paths"][template.replace("{" + parameter + "}", value)] = {"post": concrete}
    return document


def document_per_value(
    app: FastAPI,
    template: str,
    parameter: str,
    bodies: Callable[[], tuple[Hashable, Mapping[str, type[BaseModel]]]],
    response: type[BaseModel],
) -> None:
    """Serve ``app``'s OpenAPI document with :func:`per_value_operations` applied to
    ``template``. ``bodies()`` gives a key and the request model per value; the document is
    rebuilt when the key changes (the models a server has loaded, say)."""
    built: dict[Hashable, dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        key, models = bodies()
        if key not in built:
            app.openapi_schema = None
            document = FastAPI.openapi(app)
            built.clear()
            built[key] = per_value_operations(document, template, parameter, models, response)
        app.openapi_schema = built[key]
        return built[key]

    app.openapi = openapi  # type: ignore[method-assign]
