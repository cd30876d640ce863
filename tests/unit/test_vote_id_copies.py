"""The rule for repeated vote_ids in one request: the first copy counts, later ones are
duplicates (the same rule as across requests)."""

from __future__ import annotations

import pytest

from services.ingest.submission import accepted_and_duplicates, first_copies
from shared.events import Vote


def vote(vote_id: str, winner: str = "model_a") -> Vote:
    return Vote.model_validate({"vote_id": vote_id, "arena": "text", "model_a": "a",
                                "model_b": "b", "winner": winner})


def test_first_copies_keep_the_first_of_each_id_in_order() -> None:
    votes = [vote("x"), vote("y"), vote("x", "model_b"), vote("z"), vote("y", "tie")]
    assert [(v.vote_id, v.winner) for v in first_copies(votes)] == [
        ("x", "model_a"), ("y", "model_a"), ("z", "model_a")]
    distinct = [vote("x"), vote("y")]
    assert first_copies(distinct) is distinct


@pytest.mark.parametrize(("sent", "published", "accepted", "duplicates"), [
    (["x", "y"], ["x", "y"], ["x", "y"], []),
    (["x", "x", "y"], ["x", "y"], ["x", "y"], ["x"]),
    (["x", "x", "y"], ["y"], ["x", "y"], ["x", "x"]),  # x seen before, and repeated
    (["x", "y"], [], ["x", "y"], ["x", "y"]),
])
def test_a_202_lists_each_id_once_and_every_copy_not_counted(
    sent: list[str], published: list[str], accepted: list[str], duplicates: list[str]
) -> None:
    got = accepted_and_duplicates([vote(i) for i in sent], [vote(i) for i in published])
    assert got == (accepted, duplicates)
