"""The voter screen's statistic: per voter and model, a one-sided CUSUM of the log-likelihood
ratio "this voter's favourite model always wins" vs "outcomes follow the board's prediction"
(the test is described in services/rating/voter_screen.py). Pure: no I/O."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import orjson

from shared.events import Vote


@dataclass(frozen=True)
class ScreenOptions:
    threshold: float = 9.2
    epsilon: float = 0.1
    p_floor: float = 0.02  # predicted probabilities are clamped to [floor, 1 - floor]


def screened(vote: Vote) -> bool:
    """Votes the screen looks at: counted ones with a voter (released votes were judged)."""
    return vote.voter is not None and vote.anonymous and vote.excluded is None and not vote.released


# The stored form of a voter's statistics (the ``voters`` hash): a version byte (1), the votes
# screened (int64), the byte length of the names; the model ids joined by spaces (ids have none);
# then per model, in the same order, a 32-byte record (cusum, battles, wins, expected wins) as
# little-endian double, int64, int64, double. Values written before it are JSON objects
# ``{"n": votes, "m": {model: [cusum, battles, wins, expected]}}`` (first byte "{"), still read.
# Cheaper than JSON both ways: a load splits the names and keeps the records as bytes, a vote
# unpacks and repacks only the two records it touches, and a dump concatenates.
_FORMAT = 1
_HEADER = struct.Struct("<BqI")
_RECORD = struct.Struct("<dqqd")
_R = _RECORD.size
_unpack_record, _pack_record, _pack_new = _RECORD.unpack_from, _RECORD.pack_into, _RECORD.pack


class VoterStats:
    """Per model: [cusum, battles, wins, expected wins] since the statistic last left 0."""

    __slots__ = ("_names", "_records", "votes")

    def __init__(self, votes: int = 0, models: dict[str, list[float]] | None = None) -> None:
        self.votes = votes
        self._names: list[str] = []
        self._records = bytearray()
        for model, (cusum, battles, wins, expected) in (models or {}).items():
            self._append(model, float(cusum), int(battles), int(wins), float(expected))

    def __len__(self) -> int:
        """The number of models with a statistic (above 0)."""
        return len(self._names)
    @property
    def models(self) -> dict[str, list[float]]:
        """The statistics as a dict (a copy: ``score`` updates the records)."""
        return {
            name: list(_RECORD.unpack_from(self._records, i * _R))
            for i, name in enumerate(self._names)
        }

    @classmethod
    def load(cls, raw: bytes | None) -> VoterStats:
        if raw is None:
            return cls()
        if raw[:1] == b"{":  # written before the packed form
            doc = orjson.loads(raw)
            return cls(int(doc["n"]), doc["m"])
        version, votes, length = _HEADER.unpack_from(raw)
        if version != _FORMAT:
            raise ValueError(f"voter statistics of unknown format {version}")
        stats = cls.__new__(cls)
        stats.votes = votes
        end = _HEADER.size + length
        stats._names = raw[_HEADER.size:end].decode().split(" ") if length else []
        stats._records = bytearray(raw[end:])
        if len(stats._records) != _R * len(stats._names):
            raise ValueError("voter statistics truncated")
        return stats

    def dump(self) -> bytes:
        names = " ".join(self._names).encode()
        return b"".join((_HEADER.pack(_FORMAT, self.votes, len(names)), names, self._records))

    def _append(self, model: str, cusum: float, battles: int, wins: int, expected: float) -> None:
        if not model or " " in model:
            raise ValueError(f"model id {model!r} cannot be stored in voter statistics")
        self._names.append(model)
        self._records += _RECORD.pack(cusum, battles, wins, expected)

    def update(self, vote: Vote, p_a: float, options: ScreenOptions) -> tuple[str, float] | None:
        """Score one vote (p_a = predicted P(model_a wins)); the model whose statistic crossed
        the threshold and its value, or None."""
        return self.score(sides(vote.model_a, vote.model_b, p_a, options), vote.winner,
                          options.threshold)

    def score(
        self, pair: tuple[Side, Side], winner: str, threshold: float
    ) -> tuple[str, float] | None:
        """``update`` with the battle's two sides worked out beforehand (``sides``)."""
        names, records = self._names, self._records
        self.votes += 1
        crossed: tuple[str, float] | None = None
        for model, p, step_won, step_lost, winning_outcome in pair:
            won = winner == winning_outcome
            if model in names:
                at = names.index(model) * _R
                cusum, battles, wins, expected = _unpack_record(records, at)
                value = cusum + (step_won if won else step_lost)
                if not value > 0.0:  # max(0, value) == 0 (NaN too): back at 0, no statistic
                    del names[at // _R]
                    del records[at:at + _R]
                    continue
                _pack_record(records, at, value, battles + 1, wins + won, expected + p)
            else:  # the statistic starts at 0: [0.0, 0, 0, 0.0]
                value = step_won if won else step_lost
                if not value > 0.0:
                    continue
                if not model or " " in model:
                    raise ValueError(f"model id {model!r} cannot be stored in voter statistics")
                names.append(model)
                records += _pack_new(value, 1, won, p)
            if value >= threshold and (crossed is None or value > crossed[1]):
                crossed = (model, value)
        return crossed


# one side of a battle, for the screen: (model, clamped predicted P(it wins), CUSUM step when
# it wins, step when it does not, the outcome that means it won)
Side = tuple[str, float, float, float, str]


def sides(model_a: str, model_b: str, p_a: float, options: ScreenOptions) -> tuple[Side, Side]:
    eps, floor = options.epsilon, options.p_floor
    ceiling = 1.0 - floor
    p = min(max(p_a, floor), ceiling)
    q = min(max(1.0 - p_a, floor), ceiling)
    log = math.log
    return ((model_a, p, log((1 - eps) / p), log(eps / (1 - p)), "model_a"),
            (model_b, q, log((1 - eps) / q), log(eps / (1 - q)), "model_b"))
