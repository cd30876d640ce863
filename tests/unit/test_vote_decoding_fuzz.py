"""Hypothesis fuzz of vote decoding: any bytes decode to votes or raise ValidationError."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.rating.arena_slices import RawRecord, decode
from shared.events import Vote, decode_vote_record

VALID: dict[str, Any] = {"vote_id": "v1", "arena": "text", "model_a": "a", "model_b": "b",
                         "winner": "model_a"}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=6),
    max_leaves=20,
)
# votes with some fields replaced by arbitrary JSON, or extra fields added
mutated = st.builds(
    lambda changes, drop: {**{k: v for k, v in VALID.items() if k not in drop}, **changes},
    st.dictionaries(st.sampled_from([*VALID, "categories", "language", "turns", "anonymous",
                                     "voter", "style", "prompt_hash", "excluded", "released",
                                     "received_at", "unknown"]), json_values, max_size=4),
    st.sets(st.sampled_from(list(VALID)), max_size=2),
)


def decodes_or_rejects(raw: bytes) -> None:
    try:
        votes = decode_vote_record(raw)
    except ValidationError:
        return
    assert all(isinstance(v, Vote) for v in votes)  # "[]" is an empty record
    assert decode_vote_record(orjson.dumps([v.model_dump(mode="json") for v in votes])) == votes


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(raw: bytes) -> None:
    decodes_or_rejects(raw)
    decodes_or_rejects(b"[" + raw + b"]")


@settings(max_examples=400, deadline=None)
@given(st.one_of(mutated, st.lists(mutated, max_size=3), json_values))
def test_arbitrary_json(value: Any) -> None:
    raw = orjson.dumps(value)
    decodes_or_rejects(raw)
    votes, dead = decode([RawRecord("t", 0, 0, raw)])  # the worker dead-letters, never raises
    assert len(dead) + (1 if votes else 0) >= 1 or raw == b"[]"
