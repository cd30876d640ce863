"""Which votes of a flagged voter were kept (services/rating/kept_votes.py), in pure code."""

from __future__ import annotations

from services.rating.kept_votes import _kept
from shared.events import Vote


def vote(vote_id: str) -> Vote:
    return Vote(vote_id=vote_id, arena="text", model_a="a", model_b="b", winner="model_a",
                voter="rig")


def test_kept_from_the_vote_that_crossed_on() -> None:
    flags = {("text", "rig"): (10, "v3")}
    who = ("text", "rig")
    kept: dict[tuple[str, str], list[bytes]] = {}
    assert not _kept(flags, who, 9, vote("v0"), kept), "before the flagging record: counted"
    assert not _kept(flags, who, 10, vote("v2"), kept), "in it, before the crossing: counted"
    assert _kept(flags, who, 10, vote("v3"), kept)
    kept[who] = [b"v3"]
    assert _kept(flags, who, 10, vote("v4"), kept), "in it, after the crossing: kept"
    assert _kept(flags, who, 11, vote("v5"), kept)


def test_evidence_without_the_vote_keeps_the_whole_flagging_record() -> None:
    flags = {("text", "rig"): (10, "")}
    assert _kept(flags, ("text", "rig"), 10, vote("v2"), {})
    assert not _kept(flags, ("text", "rig"), 9, vote("v1"), {})
