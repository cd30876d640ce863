"""The next-battle fast path's query parser: what it answers itself, what it leaves to the
route (whose 422s then apply)."""

from __future__ import annotations

import pytest

from services.api.next_battle import simple_query


@pytest.mark.parametrize(("query", "expected"), [
    (b"", ("overall", 1)),
    (b"n=7", ("overall", 7)),
    (b"category=coding&n=3", ("coding", 3)),
    (b"language=zh", ("lang:zh", 1)),
    (b"n=50", ("overall", 50)),
])
def test_well_formed_queries(query: bytes, expected: tuple[str, int]) -> None:
    assert simple_query(query, 50) == expected


@pytest.mark.parametrize("query", [
    b"n=0", b"n=51", b"n=-1", b"n=x", b"n=99999", b"n=1&n=2", b"category=Bad!",
    b"category=coding&language=en", b"category=a%20b", b"other=1", b"category=",
])
def test_anything_else_goes_to_the_route(query: bytes) -> None:
    assert simple_query(query, 50) is None
