from __future__ import annotations

import orjson
import pytest

from services.ingest.app import NDJSON, InvalidBody, parse_batch


def vote(i: int, **extra: object) -> dict[str, object]:
    return {
        "vote_id": f"v{i}",
        "arena": "text",
        "model_a": "a",
        "model_b": "b",
        "winner": "tie",
        **extra,
    }


def test_json_array_and_ndjson_parse_the_same() -> None:
    items = [vote(i) for i in range(3)]
    as_array = parse_batch(orjson.dumps(items), "application/json", 10)
    as_lines = parse_batch(b"\n".join(orjson.dumps(v) for v in items) + b"\n\n", NDJSON, 10)
    assert as_array == as_lines and [v.vote_id for v in as_array] == ["v0", "v1", "v2"]


@pytest.mark.parametrize(
    ("body", "ctype", "message"),
    [
        (b"{", "application/json", "not valid JSON"),
        (b'{"a": 1}', "application/json", "JSON array"),
        (b"[]", "application/json", "empty"),
        (b'{"vote_id": "x"}\nnope', NDJSON, "line 2"),
        (orjson.dumps([vote(i) for i in range(11)]), "application/json", "limit is 10"),
    ],
)
def test_malformed_batches_say_what_is_wrong(body: bytes, ctype: str, message: str) -> None:
    with pytest.raises(InvalidBody) as info:
        parse_batch(body, ctype, 10)
    assert message in str(info.value.detail)


def test_invalid_items_are_reported_by_index() -> None:
    items = [vote(0), vote(1, winner="x"), vote(2, model_b="a")]
    with pytest.raises(InvalidBody) as info:
        parse_batch(orjson.dumps(items), "application/json", 10)
    detail = info.value.detail
    assert isinstance(detail, list)
    assert {tuple(d["loc"][:2]) for d in detail} == {("body", 1), ("body", 2)}
