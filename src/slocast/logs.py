"""Structured logs for the servers: one JSON object per line (or plain text), slocast's own
events and uvicorn's alike, so a log pipeline parses them without patterns.

Events carry their facts as fields (``domain``, ``version``, ``reason`` ...) besides the
message: ``log.info("serving %s %s", domain, version, extra={"domain": domain, ...})``.
"""

from __future__ import annotations

import logging.config
from typing import Any, Literal

__all__ = ["LogFormat", "access_log_shown", "configure_logging", "logging_config"]

LogFormat = Literal["json", "text"]


def logging_config(fmt: LogFormat, level: str = "info") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict (also uvicorn's ``log_config``): slocast logs at
    INFO and up, uvicorn (access lines included) at ``level``; everything to stderr."""
    formatter: dict[str, Any] = (
        {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
        if fmt == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    handler = {"handlers": ["stderr"], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "slocast": {**handler, "level": "INFO"},
            "uvicorn": {**handler, "level": level.upper()},
            "uvicorn.access": {**handler, "level": level.upper()},
        },
    }


def configure_logging(fmt: LogFormat, level: str = "info") -> dict[str, Any]:
    """Apply :func:`logging_config` to this process and return it (for uvicorn's workers)."""
    config = logging_config(fmt, level)
    logging.config.dictConfig(config)
    return config


def access_log_shown(level: str) -> bool:
    """Whether uvicorn's access lines (INFO) pass ``level``. Where they do not, uvicorn should
    not build them: it formats each request's client address and path before the logger drops
    the line, about 5 % of a one-row prediction's time in the server."""
    number = logging.getLevelName(level.upper())  # a name it does not know: left to uvicorn
    return not isinstance(number, int) or number <= logging.INFO
