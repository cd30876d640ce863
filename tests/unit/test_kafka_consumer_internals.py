"""The faust internals services/rating/kafka_consumer.py overrides and reads are still where it
expects them: this fails when a faust-streaming upgrade moves them."""

from __future__ import annotations

import inspect

import faust
import pytest
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.tuples import Message

from services.rating import kafka_consumer


def test_the_checked_faust_version_is_the_installed_one() -> None:
    kafka_consumer.check_faust_version()
    with pytest.raises(RuntimeError, match=r"faust-streaming 0\.16\.0"):
        kafka_consumer.check_faust_version("0.16.0")


def test_faust_seeks_to_committed_offsets_in_perform_seek() -> None:
    source = inspect.getsource(faust_consumer.Consumer.perform_seek)
    assert "seek_to_committed" in source and "_committed_offset" in source
    # the recovery after each rebalance seeks through it, and getmany when the flow is stopped
    from faust.tables import recovery
    assert "perform_seek()" in inspect.getsource(recovery.Recovery)
    assert "perform_seek()" in inspect.getsource(faust_consumer.Consumer.getmany)


def test_the_fetcher_waits_in_wait_next_records_while_the_flow_is_stopped() -> None:
    source = inspect.getsource(faust_consumer.Consumer._wait_next_records)
    assert "can_resume_flow" in source and "flow_active" in source
    assert "_wait_next_records" in inspect.getsource(faust_consumer.Consumer.getmany)
    params = inspect.signature(faust_consumer.Consumer._wait_next_records).parameters
    assert list(params) == ["self", "timeout"]


def test_seek_wait_seeks_in_the_consumer_thread_and_sets_the_read_offsets() -> None:
    thread = faust_aiokafka.AIOKafkaConsumerThread
    assert "call_thread" in inspect.getsource(thread.seek_wait)
    assert "_read_offset" in inspect.getsource(thread._seek_wait)
    assert "seek_wait" in inspect.getsource(faust_consumer.Consumer.seek_wait)
    drain = inspect.getsource(faust_consumer.Consumer._drain_messages)
    assert "offset >= r_offset" in drain and "suspend_flow" in drain


def test_the_consumer_has_the_flow_controls_and_offsets_used() -> None:
    for name in ("stop_flow", "resume_flow", "seek", "assignment", "earliest_offsets",
                 "perform_seek", "_wait_next_records"):
        assert callable(getattr(faust_aiokafka.Consumer, name)), name
    source = inspect.getsource(faust_consumer.Consumer)
    assert "self._committed_offset = defaultdict" in source
    assert "self.flow_active = " in source


def test_the_streams_buffers_are_cleared_when_the_flow_resumes() -> None:
    from faust import channels
    assert "clear_on_resume=True" in inspect.getsource(channels.Channel)


def test_the_worker_consumer_overrides_the_seek() -> None:
    consumer = kafka_consumer._Consumer
    assert consumer.perform_seek.__qualname__ == "_Consumer.perform_seek"
    assert consumer._wait_next_records.__qualname__ == "_Consumer._wait_next_records"


def test_the_app_waits_for_the_streams_at_a_stop_in_consumer_wait_empty() -> None:
    """``App._consumer_wait_empty`` bounds faust's wait for the batches in flight at a stop by
    the stop grace: faust must still call it from ``_stop_consumer`` (and at a revocation)."""
    assert "_consumer_wait_empty(" in inspect.getsource(faust.App._stop_consumer)
    assert "_consumer_wait_empty)" in inspect.getsource(faust.App._on_partitions_revoked)
    params = inspect.signature(faust.App._consumer_wait_empty).parameters
    assert list(params) == ["self", "consumer", "logger"]


def test_the_bounded_wait_for_the_streams_does_what_faust_wait_empty_does() -> None:
    """``_Consumer.wait_empty_within`` is faust's ``wait_empty`` with a deadline (faust's own
    cannot be cancelled: ``_wait_for_ack`` swallows the cancellation)."""
    source = inspect.getsource(faust_consumer.Consumer.wait_empty)
    for step in ("self._unacked_messages", "gc.collect()", "self.commit)()",
                 "self._wait_for_ack)(timeout=1)", "self._clean_unacked_messages()",
                 "self.commit_and_end_transactions)()"):
        assert step in source, step


def test_an_event_is_acked_only_when_its_last_reference_is_released() -> None:
    """services/rating/stop_grace.py pins a given up batch's events with ``incref``: faust
    marks a message processed (committable) only when ``ack`` releases its last reference."""
    assert "self.decref(n)" in inspect.getsource(Message.ack)
    assert "on_final_ack" in inspect.getsource(Message.ack)
