"""VoterStats.score (in place) gives the statistics of the plain CUSUM update, bit for bit; the
packed stored form round-trips, and JSON written before it still loads."""

from __future__ import annotations

import random

import orjson
import pytest

from services.rating.voter_stats import ScreenOptions, Side, VoterStats, sides

OUTCOMES = ("model_a", "model_b", "tie", "tie_bothbad")


def plain_score(
    models: dict[str, list[float]], pair: tuple[Side, Side], winner: str, threshold: float
) -> tuple[str, float] | None:
    """The update written out: a new [cusum, battles, wins, expected] from the old one."""
    crossed: tuple[str, float] | None = None
    for model, p, step_won, step_lost, winning_outcome in pair:
        won = winner == winning_outcome
        stat = models.get(model, [0.0, 0, 0, 0.0])
        value = max(0.0, stat[0] + (step_won if won else step_lost))
        if value == 0.0:
            models.pop(model, None)
            continue
        models[model] = [value, stat[1] + 1, stat[2] + int(won), stat[3] + p]
        if value >= threshold and (crossed is None or value > crossed[1]):
            crossed = (model, value)
    return crossed


def test_score_matches_the_plain_update() -> None:
    rng = random.Random(7)
    options = ScreenOptions()
    for _ in range(500):
        expected: dict[str, list[float]] = {}
        stats = VoterStats.load(None)
        favourite = rng.choice("abcdef")
        for _ in range(rng.randrange(1, 80)):
            a, b = rng.sample("abcdef", 2)
            pair = sides(a, b, rng.choice([0.5, 0.01, 0.99, rng.random()]), options)
            winner = "model_a" if a == favourite else rng.choice(OUTCOMES)
            assert stats.score(pair, winner, options.threshold) == plain_score(
                expected, pair, winner, options.threshold)
            assert stats.models == expected
            assert stats.dump() == VoterStats(stats.votes, expected).dump()
            if rng.random() < 0.2:  # as between batches: stored and loaded again
                stats = VoterStats.load(stats.dump())


def random_stats(rng: random.Random) -> tuple[int, dict[str, list[float]]]:
    ids = ["gpt-5", "claude-sonnet-4.5", "meta/llama-4-maverick", "qwen3.5-max-preview",
           "o4-mini", "a", "b:c@d+e"]
    names = rng.sample(ids, rng.randrange(0, 7))
    return rng.randrange(0, 10**6), {
        name: [rng.random() * 20, rng.randrange(1, 10**6), rng.randrange(0, 10**6),
               rng.random() * 1000]
        for name in names
    }


def test_packed_form_round_trips() -> None:
    rng = random.Random(11)
    for _ in range(300):
        votes, models = random_stats(rng)
        raw = VoterStats(votes, models).dump()
        assert raw[:1] == b"\x01"
        loaded = VoterStats.load(raw)
        assert (loaded.votes, loaded.models, len(loaded)) == (votes, models, len(models))
        assert [type(x) for stat in loaded.models.values() for x in stat] == [
            float, int, int, float] * len(models)
        assert loaded.dump() == raw


def test_json_written_before_the_packed_form_still_loads() -> None:
    """Statistics stored as JSON by earlier workers load to the same values and score the same;
    the next dump writes the packed form."""
    rng = random.Random(12)
    options = ScreenOptions()
    for _ in range(300):
        votes, models = random_stats(rng)
        legacy = orjson.dumps({"n": votes, "m": models})  # what VoterStats.dump wrote before
        from_json, from_packed = VoterStats.load(legacy), VoterStats.load(
            VoterStats(votes, models).dump())
        assert (from_json.votes, from_json.models) == (votes, models)
        names = [*models, "x", "y"]
        for _ in range(5):
            a, b = rng.sample(names, 2)
            pair = sides(a, b, rng.random(), options)
            winner = rng.choice(OUTCOMES)
            assert from_json.score(pair, winner, 5.0) == from_packed.score(pair, winner, 5.0)
        assert from_json.dump() == from_packed.dump()
        assert from_json.dump()[:1] == b"\x01"


def test_empty_and_unknown_forms() -> None:
    assert (VoterStats.load(None).votes, VoterStats.load(None).models) == (0, {})
    empty = VoterStats(3, {})
    assert VoterStats.load(empty.dump()).votes == 3 and not VoterStats.load(empty.dump())
    with pytest.raises(ValueError):
        VoterStats.load(b"\x02" + VoterStats(1, {}).dump()[1:])
    with pytest.raises(ValueError):
        VoterStats.load(VoterStats(1, {"a": [1.0, 1, 1, 0.5]}).dump()[:-1])
    with pytest.raises(ValueError):  # ids are joined by spaces: one with a space cannot be kept
        VoterStats(0, {"a b": [1.0, 1, 1, 0.5]})
