"""The port votes and score events leave ingest by: ``VotePublisher`` (Kafka in production,
``services.ingest.kafka_publisher``; a recorder in tests) and the error it raises."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from shared.events import ScoreEvent, Vote


class PublishUnavailable(Exception):
    """Kafka did not acknowledge in time; the client should retry with the same vote ids."""


class VotePublisher(Protocol):
    """The port votes and score events leave ingest by (Kafka in production, a recorder in
    tests): ``publish`` returns once the events are durable, else raises ``PublishUnavailable``.
    """

    @property
    def ready(self) -> bool:
        """Whether events can be published now (``/readyz``)."""
        ...

    async def start(self) -> None:
        """Begin connecting (returns without waiting for the broker)."""

    async def stop(self) -> None:
        """Flush what is in flight and disconnect."""

    async def publish(self, votes: Sequence[Vote]) -> None: ...

    def in_flight(self, vote_ids: Iterable[str]) -> set[str]:
        """The ids among ``vote_ids`` whose sends are still in flight (or delivered and not
        remembered yet): their claims must stay."""
        ...

    async def publish_scores(self, scores: Sequence[ScoreEvent]) -> None: ...
