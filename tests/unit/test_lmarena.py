"""LMArena rows (JSONL and CSV) as votes: the column mapping and the reasons for refusals."""

from __future__ import annotations

from typing import Any

import pytest

from services.cli.lmarena import Rejected, language_code, parse_text, to_vote
from shared.events import Vote

ROW: dict[str, Any] = {"model_a": "gpt-4-0314", "model_b": "claude-v1", "winner": "model_a",
                       "language": "English", "turn": 1, "anony": True, "tstamp": 1682000000.5}


@pytest.mark.parametrize(("winner", "ours"), [
    ("model_a", "model_a"), ("model_b", "model_b"), ("tie", "tie"),
    ("tie (bothbad)", "tie_bothbad"),
])
def test_winner_values_map_to_ours(winner: str, ours: str) -> None:
    vote = to_vote({**ROW, "winner": winner}, 1, "text")
    assert isinstance(vote, Vote) and vote.winner == ours


@pytest.mark.parametrize(("name", "code"), [
    ("English", "en"), ("Chinese", "zh"), ("russian", "ru"), ("Portuguese", "pt"),
    ("en", "en"), ("ZH", "zh"), ("Tagalog", "tagalog"), ("Scottish Gaelic", "scottish-gaelic"),
    ("unknown", None), ("", None), (None, None),
])
def test_language_names_become_codes_or_slugs(name: str | None, code: str | None) -> None:
    assert language_code(name) == code


def test_a_full_row_maps_every_column() -> None:
    vote = to_vote({**ROW, "turn": "3", "anony": "False", "judge": "arena_user_9",
                    "question_id": "q-77"}, 5, "vision", ("coding",))
    assert isinstance(vote, Vote)
    assert (vote.vote_id, vote.arena, vote.model_a, vote.model_b, vote.language, vote.turns,
            vote.anonymous, vote.voter, vote.categories) == (
        "q-77", "vision", "gpt-4-0314", "claude-v1", "en", 3, False, "arena_user_9", ["coding"])


def test_vote_ids_without_question_id_are_stable_and_distinct() -> None:
    first = to_vote(ROW, 1, "text")
    again = to_vote(dict(ROW), 1, "text")
    other_row = to_vote(ROW, 2, "text")
    assert isinstance(first, Vote) and isinstance(again, Vote) and isinstance(other_row, Vote)
    assert first.vote_id == again.vote_id != other_row.vote_id


@pytest.mark.parametrize(("change", "kind", "needle"), [
    ({"winner": "both"}, "winner", "'both'"),
    ({"turn": "two"}, "turn", "not a number"),
    ({"turn": 0}, "turn", ">= 1"),
    ({"anony": "maybe"}, "anony", "true or false"),
    ({"language": "日本語!"}, "language", "slug"),
    ({"model_b": "gpt-4-0314"}, "vote", "different"),
    ({"model_a": "bad|name"}, "model_a", "pattern"),
    ({"model_b": ""}, "model_b", "pattern"),
])
def test_rows_that_cannot_be_mapped_are_rejected_with_a_reason(
    change: dict[str, Any], kind: str, needle: str
) -> None:
    result = to_vote({**ROW, **change}, 7, "text")
    assert isinstance(result, Rejected), result
    assert (result.line, result.kind) == (7, kind) and needle in result.reason


def test_csv_and_jsonl_read_the_same_rows() -> None:
    csv_text = ("model_a,model_b,winner,language,turn,anony,tstamp\n"
                "a,b,tie (bothbad),English,1,True,1.0\n"
                "a,b,model_b,Chinese,2,False,2.0\n"
                "a,b,model_a,English,1,True,3.0,extra\n")
    jsonl_text = ('{"model_a":"a","model_b":"b","winner":"tie (bothbad)","language":"English",'
                  '"turn":1,"anony":true,"tstamp":1.0}\n\n'
                  '{"model_a":"a","model_b":"b","winner":"model_b","language":"Chinese",'
                  '"turn":2,"anony":false,"tstamp":2.0}\n'
                  '{not json\n')
    for text, fmt in ((csv_text, "csv"), (jsonl_text, "jsonl")):
        rows = parse_text(text, fmt)
        assert [line for line, _ in rows] == [1, 2, 3]
        votes = [to_vote(r, line, "text") for line, r in rows[:2] if isinstance(r, dict)]
        assert [(v.winner, v.language, v.turns, v.anonymous) for v in votes
                if isinstance(v, Vote)] == [("tie_bothbad", "en", 1, True),
                                            ("model_b", "zh", 2, False)]
        assert isinstance(rows[2][1], Rejected)
