"""Entrypoint: ``python -m services.rating`` runs the faust worker (settings from PODIUM_* env)."""

from __future__ import annotations

import os

# One BLAS thread: a 300x300 factorisation is faster single-threaded, and multi-threaded
# OpenBLAS stalls badly on a loaded 2-core machine (measured 35 ms vs 0.33 ms).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import asyncio
import logging
import signal
import threading

import faust

from services.common.redis_client import check_topology
from services.common.redis_client import connect as redis_connect
from services.common.runtime import configure_logging, tune_gc_for_batches
from services.rating.worker import build_worker, wait_for_kafka
from shared.settings import RatingSettings


class RatingWorker(faust.Worker):
    """faust's worker with Podium's log format (text or JSON) on the root logger."""

    def __init__(self, app: faust.App, settings: RatingSettings) -> None:
        super().__init__(app, loglevel=settings.log_level.lower(), quiet=True)
        self._settings = settings

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        configure_logging(self._settings.log_level, "rating", self._settings.log_format)

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        """A stop has a deadline: the stop grace for the batch in flight plus time to close
        the clients. Past it the process exits anyway (a cleanup stuck on a client that will
        never answer): offsets are committed only for applied batches, so whatever was not
        finished is re-read by whoever gets the partition and counted once (the fences)."""
        if not self._signal_stop_time:
            deadline = self._settings.rating_stop_grace_s + STOP_CLEANUP_S
            watchdog = threading.Timer(deadline, _exit_past_deadline, args=(deadline,))
            watchdog.daemon = True
            watchdog.start()
        super()._schedule_shutdown(signal)


STOP_CLEANUP_S = 10.0  # after the stop grace: closing Kafka and Redis clients


def _exit_past_deadline(deadline: float) -> None:
    logging.getLogger(__name__).error(
        "the stop did not finish within %.0fs; exiting without the rest of the cleanup "
        "(nothing uncommitted is lost: it is re-read)", deadline)
    logging.shutdown()
    os._exit(0)


def main() -> None:
    settings = RatingSettings()
    configure_logging(settings.log_level, "rating")
    for sig in (signal.SIGTERM, signal.SIGINT):  # until faust installs its own handlers
        signal.signal(sig, _exit_cleanly)
    # faust gives up if Kafka is not there as it starts
    asyncio.run(check_redis(settings))  # a bad Redis URL stops the worker here
    replication_factor = asyncio.run(wait_for_kafka(settings))
    app = build_worker(settings, replication_factor=replication_factor)
    worker = RatingWorker(app, settings)
    tune_gc_for_batches()
    worker.execute_from_commandline()  # handles SIGINT/SIGTERM: stops agents, commits, closes


async def check_redis(settings: RatingSettings) -> None:
    """A malformed URL (ValueError) or a ``redis+cluster://`` URL naming a node that is not in
    cluster mode (NotACluster) stops the worker before it consumes anything."""
    client = redis_connect(settings.redis_url)
    try:
        await check_topology(client)
    finally:
        await client.aclose()


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)  # nothing consumed yet: nothing to finish


if __name__ == "__main__":
    main()
