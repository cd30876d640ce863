"""Checks that what the rating service wrote, and what the api served, is the standings
contract (``shared.standings``)."""

from __future__ import annotations

import orjson

from services.api.standings import StandingsReader
from services.common.redis_client import connect
from shared.keys import KeyLayout
from shared.standings import Standings, StoredRow, StoredStandings


async def stored_standings(redis_url: str, prefix: str, arena: str, view: str) -> bytes:
    """The board's standings document as the rating service wrote it to Redis."""
    client = connect(redis_url)
    try:
        raw = await StandingsReader(client, KeyLayout(prefix)).board(arena, view)
    finally:
        await client.aclose()
    assert raw is not None, f"no standings of {arena}/{view} in Redis"
    return raw


def assert_written_from_the_contract(raw: bytes) -> None:
    """The stored bytes are a ``StoredStandings`` serialised (no field outside the model, the
    same bytes again), and parse as the api's response model."""
    doc = orjson.loads(raw)
    assert set(doc) <= set(StoredStandings.model_fields), set(doc)
    for row in doc["rows"]:
        assert set(row) <= set(StoredRow.model_fields), set(row)
    assert StoredStandings.model_validate_json(raw).to_json() == raw
    served = Standings.model_validate_json(raw)
    assert served.board == doc["board"] and len(served.rows) == len(doc["rows"])


def assert_served_by_the_contract(body: bytes) -> None:
    """An api response of a board parses as its response model."""
    Standings.model_validate_json(body)
