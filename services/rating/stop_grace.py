"""The rating worker's stop while a batch cannot finish (Redis or Kafka unreachable: the
processor retries it for ever): the batch in flight gets a bounded grace, counted from the
start of the stop, then it is given up without committing its offsets (whoever gets its
partition re-reads it; the fences count it once) and the worker exits.

faust waits for the batches in flight twice at a stop: the app's "Wait for streams" (until
every event delivered is acked) and the agent's own end (``finish_even_if_cancelled``); one
grace bounds both."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class StopGrace:
    """How long the batches in flight may still take once the worker is stopping (from the
    first ``start``), and whether one was given up (then the owed read models are not tried
    either: what kept the batch from finishing would keep them from being written)."""

    seconds: float
    gave_up: bool = False
    _deadline: float | None = None

    def start(self) -> float:
        """Start the grace if it has not started; the seconds left of it."""
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + self.seconds
        return max(0.0, self._deadline - now)


async def finish_even_if_cancelled(work: Awaitable[None], events: Sequence[Any],
                                   grace: StopGrace) -> None:
    """Run one batch to completion even when the worker is being stopped; within ``grace`` at
    most: a batch that has not ended by then is given up (cancelled) and none of its offsets
    (nor any after them) is committed.

    The batch's events are pinned (one more reference each) while it runs: faust acks them as
    soon as the agent lets go of the batch, and at a stop it also closes the stream's
    ``take_events`` generator, whose ``finally`` acks the batch while it is still in flight (a
    race: the batch's offsets were then committed and, when it was given up, lost). The pin
    makes those acks not the last reference; the batch's end releases it (an ack of our own);
    a batch given up keeps it for ever."""
    for event in events:
        event.message.incref()
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done() and grace.start() > 0:
            log.info("stop requested: finishing the batch in flight first (for up to %.1fs)",
                     grace.start())
        if not await _wait_through_cancels(task, grace):
            await _give_up(task, grace)
            raise
        _release(events)
        raise
    except BaseException:
        _release(events)  # a batch that failed is acked as before (the agent's crash path)
        raise
    _release(events)


def _release(events: Sequence[Any]) -> None:
    """Drop the batch's pin: if faust acked the events already, this ack is their last one."""
    for event in events:
        event.ack()


async def _wait_through_cancels(task: asyncio.Future[None], grace: StopGrace) -> bool:
    """Wait for ``task`` until the grace is over, however often this one is cancelled
    meanwhile; True if it ended."""
    while not task.done():
        remaining = grace.start()
        if remaining <= 0:
            return False
        try:
            await asyncio.wait({task}, timeout=remaining)
        except asyncio.CancelledError:
            continue
    return True


GIVE_UP_WAIT_S = 1.0


async def _give_up(task: asyncio.Future[None], grace: StopGrace) -> None:
    """Abandon the batch in flight: its events keep their pin (faust's acks of them are then
    not the last, so their offsets are not committed); cancel it (it lets go of the
    processor's lock)."""
    grace.gave_up = True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait({task}, timeout=GIVE_UP_WAIT_S)
    if task.done() and not task.cancelled() and task.exception() is not None:
        log.debug("the given up batch failed: %r", task.exception())
    log.warning("stop requested: gave up the batch in flight after %.1fs; its offsets are not "
                "committed, whoever gets its partition re-reads it", grace.seconds)
