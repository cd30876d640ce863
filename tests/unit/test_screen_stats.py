"""VoterStats.score (in place) gives the statistics of the plain CUSUM update, bit for bit."""

from __future__ import annotations

import random

from services.rating.screen import ScreenOptions, Side, VoterStats, sides

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
