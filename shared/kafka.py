"""Small Kafka helpers shared by the services: topic creation."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

log = logging.getLogger(__name__)

# The votes topic is the system of record: keep it forever (rebuild replays it from offset 0).
KEEP_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}
# A system-of-record topic (registry, client keys, quarantine): the latest record of each key is
# kept forever, older ones and (after delete.retention.ms) tombstones are compacted away.
COMPACTED = {"cleanup.policy": "compact"}


def replication_for(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) of the topics created on ``brokers`` brokers:
    three copies of which two must be in sync on a cluster of 3 or more (acks=all writes go on
    with one broker down, and none is lost with one broker gone), 1/1 on a single broker."""
    factor = max(1, min(brokers, 3))
    return factor, max(1, factor - 1)


async def _broker_default_factor(admin: AIOKafkaAdminClient, broker_id: int) -> int:
    """The cluster's own ``default.replication.factor`` (1 when it cannot be read): a cluster of
    three with one broker down still asks for three copies, not two for good (KRaft places
    copies on registered brokers, live or not: the one down catches up when it is back)."""
    resource = ConfigResource(ConfigResourceType.BROKER, str(broker_id),
                              {"default.replication.factor": None})
    try:
        [response] = await admin.describe_configs([resource])
    except KafkaError as exc:
        log.warning("could not read default.replication.factor (%s)", exc)
        return 1
    for described in response.to_object()["resources"]:
        for entry in described["config_entries"]:
            if entry["config_names"] == "default.replication.factor":
                return int(entry["config_value"])
    return 1


async def ensure_topics(bootstrap: str, topics: dict[str, int], timeout_ms: int = 10_000,
                        compacted: Iterable[str] = ()) -> int:
    """Create each topic (name -> partitions) that does not exist yet; existing ones are kept.
    New topics get ``replication_for`` the live brokers, or for the cluster's default
    replication factor if that is higher (one broker of three down). Returns the replication
    factor, for the topics that faust creates itself. The topics named in ``compacted`` are
    created compacted (``COMPACTED``) instead of kept whole. Raises KafkaError on a refusal."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
    await admin.start()
    try:
        brokers = (await admin.describe_cluster())["brokers"]
        default = await _broker_default_factor(admin, brokers[0]["node_id"])
        factor, min_insync = replication_for(max(len(brokers), min(default, 3)))
        existing = set(await admin.list_topics())
        kept = {**KEEP_FOREVER, "min.insync.replicas": str(min_insync)}
        compact = {**COMPACTED, "min.insync.replicas": str(min_insync)}
        compact_names = set(compacted)
        new = [
            NewTopic(name, num_partitions=parts, replication_factor=factor,
                     topic_configs=compact if name in compact_names else kept)
            for name, parts in topics.items()
            if name not in existing
        ]
        if new:
            response = await admin.create_topics(new)
            _raise_for_errors(response.to_object()["topic_errors"])
            log.info("created topics %s (replication factor %d, min.insync.replicas %d)",
                     [t.name for t in new], factor, min_insync)
        return factor
    finally:
        await admin.close()


def _raise_for_errors(results: list[dict[str, Any]]) -> None:
    """The broker answers a CreateTopics request per topic; aiokafka does not raise for them."""
    for result in results:
        code = result["error_code"]
        if code and code != TopicAlreadyExistsError.errno:  # another service created it first
            error = for_code(code)
            raise error(f"creating topic {result['topic']}: {result.get('error_message') or ''}")
