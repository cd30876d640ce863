from __future__ import annotations

import orjson
import pytest

from services.ingest.batch_body import NDJSON, InvalidBody, _parse_items, parse_batch


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


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # two objects on one line and one object over two lines: right count, still refused
        (orjson.dumps(vote(0)) + b"," + orjson.dumps(vote(1)) + b"\n"
         + orjson.dumps(vote(2))[:-1] + b"\n" + b'"turns": 2}', "line 1"),
        (orjson.dumps(vote(0))[:-1] + b"\n" + b'"turns": 2}', "line 1"),
        (orjson.dumps(vote(0)) + b"\n[" + orjson.dumps(vote(1)) + b"]", "loc"),
    ],
)
def test_ndjson_lines_are_one_vote_each(body: bytes, message: str) -> None:
    with pytest.raises(InvalidBody) as info:
        parse_batch(body, NDJSON, 10)
    assert message in str(info.value.detail)


def test_the_one_call_path_and_the_careful_path_agree() -> None:
    items = [vote(i, categories=["coding"], language="en", voter=f"u{i}",
                  style={"model_a": {"tokens": 10}, "model_b": {"tokens": 20, "bold": 1}})
             for i in range(5)]
    body = b"\n".join(orjson.dumps(v) for v in items)
    fast = parse_batch(body, NDJSON, 10)
    careful = _parse_items(body, NDJSON, 10)
    assert fast == careful == parse_batch(orjson.dumps(items), "application/json", 10)
    assert len(fast) == 5 and fast[4].style is not None and fast[4].style.model_b.bold == 1
