"""Small Kafka helpers shared by the services: topic creation."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

log = logging.getLogger(__name__)

# The votes topic is the system of record: keep it forever (rebuild replays it from offset 0).
KEEP_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}


async def ensure_topics(bootstrap: str, topics: dict[str, int], timeout_ms: int = 10_000) -> None:
    """Create each topic (name -> partitions) that does not exist yet; existing ones are kept."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(name, num_partitions=parts, replication_factor=1, topic_configs=KEEP_FOREVER)
            for name, parts in topics.items()
            if name not in existing
        ]
        if not new:
            return
        try:
            await admin.create_topics(new)
        except TopicAlreadyExistsError:
            pass  # another service created it first
        log.info("created topics %s", [t.name for t in new])
    finally:
        await admin.close()
