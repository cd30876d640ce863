"""The voter screen's decision in pure code (no Redis): who is flagged when, which votes are
quarantined and kept, what is stored, and that replays are not scored again."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from services.rating.arena_slices import RawRecord
from services.rating.screen_decision import FlagPosition, ScreenState, decide
from services.rating.voter_stats import ScreenOptions, VoterStats
from shared.events import Vote

NOW = datetime(2026, 1, 1, tzinfo=UTC)
OPTIONS = ScreenOptions()  # threshold 9.2, epsilon 0.1


def p_weak_loses(arena: str, model_a: str, model_b: str) -> float | None:
    """The board predicts "weak" wins 10 % of its battles."""
    return 0.1 if model_a == "weak" else 0.9 if model_b == "weak" else 0.5


def votes_for_weak(voter: str, offsets: range) -> list[tuple[RawRecord, Vote]]:
    """One record per vote, each a win of "weak" over "strong"."""
    out = []
    for offset in offsets:
        vote = Vote(vote_id=f"{voter}-{offset}", arena="text", model_a="weak",
                    model_b="strong", winner="model_a", voter=voter)
        out.append((RawRecord("votes", 0, offset, None), vote))
    return out


def fresh_state(*voters: str, fence: int = -1) -> ScreenState:
    return ScreenState(flagged=set(), fences={"votes/0": fence} if fence >= 0 else {},
                       stats={v: VoterStats() for v in voters}, stored=set())


def test_a_voter_always_picking_the_weak_model_is_flagged_at_the_fifth_vote() -> None:
    """Each win of a 10 % model adds log(0.9 / 0.1) = 2.2: past 9.2 at the fifth."""
    votes = votes_for_weak("rigger", range(8))
    state = fresh_state("rigger")
    decision = decide("text", votes, state, p_weak_loses, OPTIONS, NOW)
    assert [i for i, _ in decision.marked] == [4, 5, 6, 7]
    assert all(v.excluded == "quarantined" for _, v in decision.marked)
    assert state.flagged == {"rigger"}
    evidence = orjson.loads(decision.flags["rigger"])
    assert evidence["model"] == "weak" and evidence["battles_with_model"] == 5
    assert evidence["position"] == {"topic": "votes", "partition": 0, "offset": 4}
    assert evidence["vote_id"] == "rigger-4"  # the vote that crossed
    assert len(decision.kept["rigger"]) == 4  # the quarantined votes, as received
    assert orjson.loads(decision.kept["rigger"][0])["vote_id"] == "rigger-4"
    assert decision.fences == {"votes/0": 7}
    assert decision.stats[0] == "rigger" and VoterStats.load(
        decision.stats[1]).models["weak"][1] == 5  # scored until flagged
    assert not decision.writes_nothing()


def test_replayed_records_are_not_scored_and_excluded_only_for_flagged_voters() -> None:
    votes = [*votes_for_weak("rigger", range(3)), *votes_for_weak("honest", range(3, 6))]
    state = fresh_state("rigger", "honest", fence=5)  # every record screened before
    state.flagged.add("rigger")
    decision = decide("text", votes, state, p_weak_loses, OPTIONS, NOW)
    assert [i for i, _ in decision.marked] == [0, 1, 2]  # the flagged voter's votes
    assert not decision.kept and not decision.fences and not decision.stats
    assert decision.writes_nothing()
    assert len(state.stats["honest"]) == 0  # not scored again


def test_a_statistic_back_at_zero_is_deleted_if_it_was_stored() -> None:
    """A vote against the favourite brings its statistic back to 0: stored ones are deleted."""
    stats = VoterStats(1, {"weak": [0.5, 1, 1, 0.1]})
    state = ScreenState(flagged=set(), fences={}, stats={"v": stats}, stored={"v"})
    vote = Vote(vote_id="v-0", arena="text", model_a="weak", model_b="strong",
                winner="model_b", voter="v")
    decision = decide("text", [(RawRecord("votes", 0, 0, None), vote)], state, p_weak_loses,
                      OPTIONS, NOW)
    assert decision.emptied == ["v"] and not decision.stats and not decision.marked


def rigged_records(records: int, per_record: int) -> list[tuple[RawRecord, Vote]]:
    """Records of several votes each: a rigger's wins of "weak" between an honest voter's."""
    out = []
    for offset in range(records):
        rec = RawRecord("votes", 0, offset, None)
        for j in range(per_record):
            voter, winner = ("rigger", "model_a") if j % 2 == 0 else ("honest", "model_b")
            out.append((rec, Vote(vote_id=f"{voter}-{offset}-{j}", arena="text",
                                  model_a="weak", model_b="strong", winner=winner,
                                  voter=voter)))
    return out


def test_a_replay_after_the_screen_was_lost_excludes_exactly_what_was_excluded() -> None:
    """Redis wiped: the flags come back from the quarantine topic (with their evidence), the
    screen's fence is set past the records (kept_votes.py) and the records are replayed. The
    flagged voter's votes from before the flag counted then and must count again; from the
    vote that crossed on (inside a record of several of its votes), they stay excluded."""
    votes = rigged_records(records=4, per_record=5)  # the rigger: 3 votes a record
    first = decide("text", votes, fresh_state("rigger", "honest"), p_weak_loses, OPTIONS, NOW)
    excluded_then = [i for i, _ in first.marked]
    evidence = first.flags["rigger"]
    crossing = orjson.loads(evidence)["vote_id"]
    assert crossing == "rigger-1-2"  # the fifth win: the last rigger vote of record 1
    assert excluded_then == [7, 9, 10, 12, 14, 15, 17, 19]  # that one and every later one

    replayed = fresh_state("rigger", "honest", fence=3)
    replayed.flagged.add("rigger")
    at = FlagPosition.of(evidence)
    assert at == FlagPosition("votes/0", 1, "rigger-1-2")
    replayed.flagged_at["rigger"] = at
    again = decide("text", votes, replayed, p_weak_loses, OPTIONS, NOW)
    assert [i for i, _ in again.marked] == excluded_then
    assert again.writes_nothing()  # a replay: nothing scored, kept or fenced again


def test_a_flag_without_a_position_excludes_every_vote_of_the_voter() -> None:
    """Evidence that names no position (or another partition): as before, every vote of the
    flagged voter is excluded."""
    votes = rigged_records(records=2, per_record=3)
    assert FlagPosition.of(b'{"test": "cusum"}') is None
    for flagged_at in ({}, {"rigger": FlagPosition("votes/1", 5, "x")}):
        state = fresh_state("rigger", "honest", fence=1)
        state.flagged.add("rigger")
        state.flagged_at.update(flagged_at)
        decision = decide("text", votes, state, p_weak_loses, OPTIONS, NOW)
        assert [i for i, _ in decision.marked] == [0, 2, 3, 5]


def test_a_replay_excludes_the_originals_of_released_votes_and_counts_the_rest() -> None:
    """A voter flagged, then released by an admin: its kept votes were re-published as copies
    (``released=true``) that count. Replayed after a wipe, the voter is no longer flagged; the
    originals of the released votes stay excluded (their ids came back from the quarantine
    topic), its other votes count, and nothing is scored again."""
    votes = rigged_records(records=4, per_record=5)
    first = decide("text", votes, fresh_state("rigger", "honest"), p_weak_loses, OPTIONS, NOW)
    released = {votes[i][1].vote_id for i, _ in first.marked}
    replayed = fresh_state("rigger", "honest", fence=3)  # released: no flag any more
    replayed.released.update(released)
    again = decide("text", votes, replayed, p_weak_loses, OPTIONS, NOW)
    assert [i for i, _ in again.marked] == [i for i, _ in first.marked]
    assert again.writes_nothing() and not replayed.flagged


def test_released_ids_do_not_touch_votes_screened_for_the_first_time() -> None:
    """Only replays consult the released ids: a record past the fence is screened as usual."""
    votes = votes_for_weak("honest", range(2))
    state = fresh_state("honest")
    state.released.add("honest-0")
    decision = decide("text", votes, state, p_weak_loses, OPTIONS, NOW)
    assert decision.marked == [] and decision.fences == {"votes/0": 1}
