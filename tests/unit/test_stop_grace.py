"""The votes agent's batch in flight at a stop: finished if it ends within the grace, given up
past it with its events pinned unacked (faust then commits none of their offsets)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from faust.types import TP
from faust.types.tuples import Message

from services.rating.stop_grace import StopGrace, finish_even_if_cancelled


@dataclass
class FakeEvent:
    message: Message
    value: bytes = b"{}"

    def ack(self) -> bool:  # faust's Event.ack: the message's, with the app's consumer
        return self.message.ack(None)  # type: ignore[arg-type]


def final_acks(batch: list[FakeEvent]) -> list[int]:
    """Ack each event as take_events' ``finally`` does once the agent let go of the batch;
    the offsets whose ack was the last reference (faust marks those safe to commit)."""
    return [e.message.offset for e in batch if e.message.ack(None)]  # type: ignore[arg-type]


def events(n: int) -> list[FakeEvent]:
    tp = TP("t.podium.votes", 0)
    out = []
    for offset in range(n):
        message = Message(tp.topic, tp.partition, offset, 0.0, 0, None, b"text", b"{}", None,
                          tp=tp)
        message.incref()  # the stream's reference, as faust's consumer takes it
        out.append(FakeEvent(message))
    return out


async def agent(work: Any, batch: list[FakeEvent], grace: StopGrace,
                started: asyncio.Event) -> None:
    started.set()
    await finish_even_if_cancelled(work, batch, grace)


async def stop(task: asyncio.Task[None], started: asyncio.Event) -> float:
    """Cancel the agent as faust's stop does (again and again); seconds until it ended."""
    await started.wait()
    loop = asyncio.get_running_loop()
    begun = loop.time()
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.05)
    with pytest.raises(asyncio.CancelledError):
        await task
    return loop.time() - begun


async def test_a_batch_that_never_ends_is_given_up_after_the_grace_and_never_acked() -> None:
    batch, grace, started = events(3), StopGrace(0.3), asyncio.Event()
    cancelled = asyncio.Event()

    async def redis_down_for_ever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    took = await stop(asyncio.ensure_future(
        agent(redis_down_for_ever(), batch, grace, started)), started)
    assert 0.3 <= took < 2.0
    assert grace.gave_up and cancelled.is_set()
    assert final_acks(batch) == []


async def test_a_batch_that_ends_within_the_grace_is_finished() -> None:
    batch, grace, started = events(2), StopGrace(5.0), asyncio.Event()
    finished = asyncio.Event()

    async def slow_batch() -> None:
        await asyncio.sleep(0.2)
        finished.set()

    took = await stop(asyncio.ensure_future(agent(slow_batch(), batch, grace, started)), started)
    assert finished.is_set() and not grace.gave_up
    assert took < 2.0
    assert final_acks(batch) == [0, 1]


async def test_a_batch_acked_by_the_stream_closing_mid_flight_stays_uncommitted() -> None:
    """At a stop faust closes the stream's take_events generator, whose ``finally`` acks the
    batch while the agent still runs it (seen in CI: the given up batch's offsets committed)."""
    batch, grace, started = events(3), StopGrace(0.3), asyncio.Event()
    task = asyncio.ensure_future(agent(asyncio.Event().wait(), batch, grace, started))
    await started.wait()
    await asyncio.sleep(0)
    assert final_acks(batch) == []  # the generator's acks, mid-flight: not the last reference
    await stop(task, started)
    assert grace.gave_up
    assert not any(e.message.acked for e in batch)


async def test_a_batch_acked_mid_flight_that_then_ends_is_marked_processed() -> None:
    batch, grace, started = events(2), StopGrace(5.0), asyncio.Event()
    release = asyncio.Event()
    task = asyncio.ensure_future(agent(release.wait(), batch, grace, started))
    await started.wait()
    await asyncio.sleep(0)
    assert final_acks(batch) == []
    release.set()
    await task
    assert all(e.message.acked for e in batch)  # the batch's own end was the last ack


async def test_the_agents_wind_down_finishes_through_repeated_cancels() -> None:
    """faust may cancel the agent again while its ``finally`` writes the owed read models."""
    from services.rating.timers import through_cancels

    done = asyncio.Event()
    started = asyncio.Event()

    async def wind_down() -> None:
        started.set()
        await asyncio.sleep(0.2)
        done.set()

    task = asyncio.ensure_future(through_cancels(wind_down()))
    await started.wait()
    for _ in range(3):
        task.cancel()
        await asyncio.sleep(0.02)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done.is_set()
