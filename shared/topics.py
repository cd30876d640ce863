"""Kafka topic names. A prefix isolates environments (and each test) on one broker."""

from __future__ import annotations

from dataclasses import dataclass

VOTES = "podium.votes"
VOTES_DLQ = "podium.votes.dlq"
SCORES = "podium.scores"
RANK_CHANGES = "podium.rank-changes"


@dataclass(frozen=True)
class Topics:
    prefix: str = ""

    @property
    def votes(self) -> str:
        return self.prefix + VOTES

    @property
    def votes_dlq(self) -> str:
        return self.prefix + VOTES_DLQ

    @property
    def scores(self) -> str:
        return self.prefix + SCORES

    @property
    def rank_changes(self) -> str:
        return self.prefix + RANK_CHANGES
