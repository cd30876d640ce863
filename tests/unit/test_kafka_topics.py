"""How new topics are replicated for the size of the cluster, and refusals that are not lost."""

from __future__ import annotations

import pytest
from aiokafka.errors import InvalidReplicationFactorError, InvalidTopicError

from shared.kafka import _raise_for_errors, replication_for


def test_three_copies_two_in_sync_from_three_brokers_on() -> None:
    assert replication_for(1) == (1, 1)
    assert replication_for(2) == (2, 1)
    assert replication_for(3) == (3, 2)
    assert replication_for(5) == (3, 2)


def test_a_topic_that_exists_already_is_fine_any_other_refusal_raises() -> None:
    _raise_for_errors([{"topic": "a", "error_code": 0, "error_message": None},
                       {"topic": "b", "error_code": 36, "error_message": "exists"}])
    with pytest.raises(InvalidReplicationFactorError, match=r"podium\.votes"):
        _raise_for_errors([{"topic": "podium.votes", "error_code": 38,
                            "error_message": "Replication factor: 3 larger than brokers: 1"}])
    with pytest.raises(InvalidTopicError, match="bad name"):
        _raise_for_errors([{"topic": "bad name", "error_code": 17, "error_message": ""}])
