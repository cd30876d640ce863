"""Every setting is documented in docs/configuration.md (the generated table is current), and
the pure pieces of observability: JSON log lines with their context, rejection reasons and
counts."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from services.common.logcontext import batch_context, bind_votes, request_id_var, vote_id_var
from services.common.runtime import JsonFormatter, TextFormatter
from services.ingest.rejection_metrics import rejection_reason, votes_in
from shared.settings_doc import SECTIONS, TARGET, markdown_table, replaced

ROOT = Path(__file__).resolve().parents[2]


def test_the_configuration_doc_lists_every_setting_as_generated() -> None:
    text = (ROOT / TARGET).read_text()
    assert replaced(text) == text, f"run: make settings-doc ({TARGET})"
    table = markdown_table()
    for _, cls in SECTIONS:
        for name in cls.model_fields:
            assert f"`PODIUM_{name.upper()}`" in table


def record(message: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("services.x", logging.WARNING, __file__, 1, message, None, None)
    rec.__dict__.update(extra)
    return rec


def test_json_log_lines_carry_the_context_that_is_set() -> None:
    formatter = JsonFormatter("ingest")
    plain = orjson.loads(formatter.format(record("hello", votes=3)))
    assert plain["message"] == "hello" and plain["service"] == "ingest" and plain["votes"] == 3
    assert "request_id" not in plain and "vote_id" not in plain
    token = request_id_var.set("r-1")
    try:
        bind_votes(["a", "b", "c"])
        with batch_context("podium.votes/0@5-7 (3)"):
            entry = orjson.loads(formatter.format(record("in a request")))
            text = TextFormatter("ingest").format(record("in a request"))
    finally:
        request_id_var.reset(token)
        vote_id_var.set(None)
    assert (entry["request_id"], entry["vote_id"], entry["batch"]) == (
        "r-1", "a..c (3)", "podium.votes/0@5-7 (3)")
    assert text.endswith("[request_id=r-1 vote_id=a..c (3) batch=podium.votes/0@5-7 (3)]")


@pytest.mark.parametrize(("status", "body", "reason"), [
    (422, b'{"detail":[{"type":"unknown_model","models":["x"]}]}', "unknown_model"),
    (422, b'{"detail":[{"type":"literal_error"}]}', "invalid"),
    (413, b"", "too_large"), (503, b"", "kafka_unavailable"), (401, b"", "unauthorized"),
    (429, b"", "rate_limited"), (500, b"", "other"),
])
def test_rejection_reasons(status: int, body: bytes, reason: str) -> None:
    assert rejection_reason(status, body) == reason


def test_a_refused_batch_counts_its_votes() -> None:
    assert votes_in(b'[{"a":1},{"a":2}]', "/v1/votes/batch") == 2
    assert votes_in(b'{"a":1}\n\n{"a":2}\n{"a":3}\n', "/v1/votes/batch") == 3
    assert votes_in(b'{"a":1}', "/v1/votes") == 1
    assert votes_in(b"", "/v1/votes/batch") == 1
