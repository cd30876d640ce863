from __future__ import annotations

import pytest

from shared.keys import KeyLayout, board_name, count_field, parse_count_field, split_board


@pytest.mark.parametrize(
    ("a", "b", "winner", "field"),
    [
        ("x", "y", "model_a", "x|y|model_a"),
        ("y", "x", "model_a", "x|y|model_b"),
        ("y", "x", "model_b", "x|y|model_a"),
        ("y", "x", "tie", "x|y|tie"),
        ("y", "x", "tie_bothbad", "x|y|tie_bothbad"),
    ],
)
def test_count_fields_are_canonical(a: str, b: str, winner: str, field: str) -> None:
    assert count_field(a, b, winner) == field  # type: ignore[arg-type]
    assert parse_count_field(field) == tuple(field.split("|"))


def test_parse_rejects_unknown_outcome() -> None:
    with pytest.raises(ValueError, match="unknown outcome"):
        parse_count_field("x|y|draw")


def test_keys_of_one_arena_share_a_hash_tag() -> None:
    keys = KeyLayout("podium")
    arena_keys = [
        keys.counts("text", "overall"),
        keys.model_index("text"),
        keys.fence("text"),
        keys.views("text"),
        keys.standings("text", "lang:zh"),
    ]
    assert all(k.startswith("podium:{text}:") for k in arena_keys)
    assert len(set(arena_keys)) == len(arena_keys)


@pytest.mark.parametrize("board", ["text/overall", "vision/lang:zh", "text/hard_prompts"])
def test_board_names_round_trip(board: str) -> None:
    assert board_name(*split_board(board)) == board


@pytest.mark.parametrize("bad", ["text", "/overall", "text/"])
def test_split_board_rejects_malformed(bad: str) -> None:
    with pytest.raises(ValueError):
        split_board(bad)


def test_generations_keep_the_arena_hash_tag_and_the_base_dedupe() -> None:
    base = KeyLayout("podium")
    g2 = base.generation(2)
    assert base.generation(0) is base
    assert g2.counts("text", "overall") == "podium.g2:{text}:cells:overall"
    assert g2.fence("text") == "podium.g2:{text}:fence"
    assert base.generations() == "podium:generations"
    with pytest.raises(ValueError):
        base.generation(-1)


def test_every_generation_announces_board_changes_on_its_base_channel() -> None:
    base = KeyLayout("podium")
    assert base.board_changes() == "podium:board-changes"
    assert base.generation(3).board_changes() == base.board_changes()
    assert KeyLayout("x.gold").board_changes() == "x.gold:board-changes"
