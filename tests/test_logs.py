"""Server logs: one JSON object per line with the event's fields, or plain text."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SCRIPT = """
import logging, sys
from slocast.logs import configure_logging
configure_logging(sys.argv[1], "warning")
logging.getLogger("slocast.trainer.service").info(
    "retrain of %s accepted", "llm-ttft", extra={"domain": "llm-ttft", "train_rows": 1200}
)
logging.getLogger("slocast.x").debug("below INFO: dropped")
logging.getLogger("uvicorn.access").info("below the uvicorn level: dropped")
logging.getLogger("uvicorn.error").warning("uvicorn says %s", "hello")
"""


def _stderr(fmt: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, fmt], capture_output=True, text=True, check=True
    )
    return done.stderr.splitlines()


def test_json_lines_carry_the_event_fields() -> None:
    lines = [json.loads(line) for line in _stderr("json")]
    assert [line["message"] for line in lines] == [
        "retrain of llm-ttft accepted",
        "uvicorn says hello",
    ]
    event = lines[0]
    assert event["domain"] == "llm-ttft" and event["train_rows"] == 1200
    assert event["level"] == "INFO" and event["logger"] == "slocast.trainer.service"
    assert event["time"][:2] == "20"
    assert lines[1]["level"] == "WARNING" and lines[1]["logger"] == "uvicorn.error"


def test_text_lines_are_plain() -> None:
    lines = _stderr("text")
    assert len(lines) == 2 and "INFO slocast.trainer.service: retrain of llm-ttft" in lines[0]
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[0])


@pytest.mark.parametrize(
    ("level", "shown"),
    [("trace", True), ("debug", True), ("info", True), ("INFO", True), ("warning", False),
     ("error", False), ("critical", False)],
)  # fmt: skip
def test_access_lines_are_built_only_where_the_level_shows_them(level: str, shown: bool) -> None:
    import uvicorn.config  # noqa: F401  (registers uvicorn's TRACE level, as serving does)

    from slocast.logs import access_log_shown

    assert access_log_shown(level) is shown
