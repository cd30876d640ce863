"""Kafka topic names. A prefix isolates environments (and each test) on one broker."""

from __future__ import annotations

from dataclasses import dataclass

VOTES = "podium.votes"
VOTES_DLQ = "podium.votes.dlq"
SCORES = "podium.scores"
RANK_CHANGES = "podium.rank-changes"
# Systems of record of the state Redis holds and must not lose (compacted, one partition each:
# the offset orders every write; docs/decisions.md "Systems of record")
MODELS = "podium.models"
CLIENTS = "podium.clients"
QUARANTINE = "podium.quarantine"
RELEASES = "podium.releases"


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

    @property
    def models(self) -> str:
        """Model registry records: key model id, value ModelInfo JSON."""
        return self.prefix + MODELS

    @property
    def clients(self) -> str:
        """Client-key records: key key id, value ClientRecord JSON, a tombstone on revoke."""
        return self.prefix + CLIENTS

    @property
    def quarantine(self) -> str:
        """Voter quarantine decisions: key ``arena/voter``, value the evidence JSON of the flag,
        a tombstone on release."""
        return self.prefix + QUARANTINE

    @property
    def releases(self) -> str:
        """Board releases: key the release id, value the Release JSON (shared/releases.py);
        never deleted (a release is immutable)."""
        return self.prefix + RELEASES
