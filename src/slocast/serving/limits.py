"""A cap on request bodies, for the prediction server and the trainer alike.

Neither uvicorn nor FastAPI caps a body: a 1 GB upload would be read into memory before the
batch limit (items per request) could refuse it. The cap is read off ``Content-Length`` before
any of the body is read, so it costs a scan of the headers. A body without a declared length
(chunked) cannot be sized up front and is refused with 411: the clients of these APIs (routers,
HTTP libraries posting JSON) always declare one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from slocast.settings import DEFAULT_MAX_BODY_BYTES

__all__ = ["DEFAULT_MAX_BODY_BYTES", "BodyLimit", "body_refusal", "send_refusal"]

ASGIApp = Callable[..., Any]


class BodyLimit:
    """Pure ASGI middleware: 413 past ``max_bytes``, 411 for a body of undeclared length, 400
    for a length that is not a number."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(
        self, scope: dict[str, Any], receive: ASGIApp, send: Callable[..., Any]
    ) -> None:
        refused = body_refusal(scope, self.max_bytes) if scope["type"] == "http" else None
        if refused is not None:
            await send_refusal(send, *refused)
            return
        await self.app(scope, receive, send)


def body_refusal(scope: Mapping[str, Any], max_bytes: int) -> tuple[int, str] | None:
    """(status, reason) when an HTTP request's body must not be read; None when it may."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            # Servers such as uvicorn refuse a malformed length before the app sees it; others
            # pass it on, and a crash on int() would be a 500.
            if not value.isdigit():
                return 400, f"Content-Length must be a whole number of bytes, got {value[:40]!r}"
            size = int(value)
            if size > max_bytes:
                return 413, f"request body of {size} bytes exceeds {max_bytes}"
            return None
        if name == b"transfer-encoding":
            return 411, "declare the body's Content-Length"
    return None


async def send_refusal(send: Callable[..., Any], status: int, detail: str) -> None:
    body = orjson.dumps({"detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
