"""The rating worker's timers beside its votes agent (style refits, fence checks, owed read
models) and its wind-down at a stop: the owed read models written, through faust's cancels."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from services.common.redis_client import REDIS_RETRYABLE
from services.rating.metrics import RatingMetrics
from services.rating.processor import RatingProcessor
from services.rating.resume import Resumer
from shared.settings import RatingSettings

log = logging.getLogger(__name__)


async def refit_style_boards(processor: RatingProcessor, settings: RatingSettings) -> None:
    """Every ``rating_style_refit_s``, refit the style-controlled boards that got battles."""
    while True:
        await asyncio.sleep(settings.rating_style_refit_s)
        try:
            await processor.refit_style_boards()
        except REDIS_RETRYABLE as exc:
            log.warning("style refit skipped (%s); retrying at the next tick", exc)


PROGRESS_LOG_S = 5.0


async def check_fences(processor: RatingProcessor, resumer: Resumer, metrics: RatingMetrics,
                       settings: RatingSettings) -> None:
    """Every ``rating_fence_check_s``: Redis's fences against what the worker applied (a Redis
    that lost votes while none come is noticed too), and the catch-up's progress."""
    while True:
        await asyncio.sleep(settings.rating_fence_check_s)
        metrics.catch_up_remaining.set(resumer.rewinds.remaining())
        resumer.rewinds.log_progress(PROGRESS_LOG_S)
        try:
            await processor.check_fences()
        except REDIS_RETRYABLE as exc:
            log.debug("fence check skipped (%s)", exc)
        except Exception:  # a bug must not stop the timer for good
            log.exception("fence check failed; retrying")


async def flush_read_models(processor: RatingProcessor, tick: float) -> None:
    """Write the matrices and history points the last refits left owed as soon as they are due,
    also when no batch comes (the votes stopped): wakes when the earliest is due, and at least
    every ``tick`` seconds to see what newer refits left owed."""
    while True:
        due_in = processor.read_models_due_in()
        await asyncio.sleep(tick if due_in is None else min(max(due_in, 0.001), tick))
        try:
            await processor.flush_read_models()
        except REDIS_RETRYABLE as exc:
            log.warning("owed read models not written (%s); retrying", exc)
            await asyncio.sleep(tick)
        except Exception:  # a bug must not stop the timer for good
            log.exception("writing owed read models failed; retrying")
            await asyncio.sleep(tick)


def flush_tick_s(settings: RatingSettings) -> float:
    """How often the flush timer looks for new owed writes: the matrices interval, within
    [0.05 s, 1 s] (a write a refit left owed is noticed at most this long after the refit)."""
    return min(1.0, max(0.05, settings.rating_matrices_interval_s))


STOP_FLUSH_ERRORS: tuple[type[Exception], ...] = (*REDIS_RETRYABLE, TimeoutError)


async def through_cancels(work: Awaitable[None]) -> None:
    """Run ``work`` to its end even if this task is cancelled meanwhile, then pass the cancel
    on. faust cancels an agent at a stop, and may cancel it again while its ``finally`` runs:
    the owed read models were then never written (a CI failure of test_quiet_stream). Each step
    of the work is bounded; the stop's deadline (``__main__``) bounds the whole."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            cancelled = True
    task.result()
    if cancelled:
        raise asyncio.CancelledError


async def flush_everything_owed(processor: RatingProcessor) -> None:
    """At a graceful stop, write whatever is owed (no later timer will)."""
    try:
        written = await asyncio.wait_for(processor.flush_read_models(everything=True), 10)
    except STOP_FLUSH_ERRORS as exc:
        log.warning("owed read models not written at stop (%s)", exc)
    except Exception:
        log.exception("writing owed read models at stop failed")
    else:
        if written:
            log.info("wrote the owed read models of %d boards before stopping", written)
