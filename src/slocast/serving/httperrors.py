"""The one mapping from slocast errors (and pydantic validation) to HTTP responses.

Shared by the prediction server and the trainer, so both speak FastAPI's 422 format
(``{"detail": [{"loc", "msg", "type"}]}``) with the offending field named.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError

from slocast.errors import BundleError, ConfigError, InputError, SlocastError

__all__ = ["error_response", "install_error_handlers", "json_response", "validation_response"]


def json_response(data: Any, status: int = 200) -> Response:
    try:
        body = orjson.dumps(data)
    except TypeError:
        # orjson stops at 64-bit integers; an error that echoes a client's huge one still goes
        # out (the standard library writes any integer).
        body = json.dumps(data, default=str).encode()
    return Response(body, status_code=status, media_type="application/json")


def error_response(exc: SlocastError) -> Response:
    """Unknown domain or bundle -> 404; bad input -> 422 naming the field; anything else -> 500."""
    if isinstance(exc, ConfigError) and exc.field == "domain":
        return json_response({"detail": exc.message}, 404)
    if isinstance(exc, BundleError):
        return json_response({"detail": str(exc)}, 404)
    if isinstance(exc, InputError):
        path = (exc.field or "").replace("[", ".").replace("]", "").split(".")
        loc = ["body", *[int(p) if p.isdigit() else p for p in path if p]]
        return json_response(
            {"detail": [{"loc": loc, "msg": exc.message, "type": "value_error"}]}, 422
        )
    return json_response({"detail": str(exc)}, 500)


def validation_response(exc: ValidationError, prefix: list[str | int]) -> Response:
    errors = exc.errors(include_url=False, include_input=False)
    detail = [{"loc": [*prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in errors]
    return json_response({"detail": detail}, 422)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SlocastError)
    async def _slocast_error(_: Request, exc: SlocastError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> Response:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return json_response({"detail": errors}, 422)

    @app.exception_handler(ValidationError)
    async def _invalid_body(_: Request, exc: ValidationError) -> Response:
        return validation_response(exc, ["body"])
