"""Process plumbing shared by the service entrypoints: logging, serving an ASGI app, and the
garbage collector's settings of a process that works in batches."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

import orjson
import uvicorn
from starlette.types import ASGIApp

from services.common.logcontext import current_context
from services.common.uvicorn_internals import EdgeLimits, edge_protocol
from shared.settings import HttpSettings

# The server stack of every service, and of the bare references the HTTP benchmarks compare
# them with (bench/reference_apps.py uses these too): explicit, so "auto" cannot pick another.
SERVER_STACK: dict[str, Any] = {"http": "httptools", "loop": "uvloop", "access_log": False,
                                "backlog": 2048}

# The first-generation threshold of the cyclic garbage collector in a process that holds a batch
# (its votes, voter statistics, battles: tens of thousands of containers) while it works on it.
# At CPython's default (700) every batch of the rating worker ran dozens of collections that
# walked those live objects again and again and promoted them into full collections: ~15 % of
# its CPU (bench/worker_cpu.py). Objects freed by reference counting (almost all) are freed as
# before; only cycles wait a little longer for their collection.
BATCH_GC_THRESHOLD = 10_000

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is logged.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, service, logger, message, the request/vote/batch
    context that is set, fields passed with ``extra=``, and the exception when there is one."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
            **current_context(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """The human format, with the request/vote/batch context appended when set."""

    def __init__(self, service: str) -> None:
        super().__init__(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = current_context()
        if context:
            line += " [" + " ".join(f"{k}={v}" for k, v in context.items()) + "]"
        return line


def configure_logging(level: str, service: str, log_format: str = "text") -> None:
    """Root logging to stderr: ``text`` for people, ``json`` (one object a line) for collectors."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if log_format == "json" else TextFormatter(service))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def edge_limits(settings: HttpSettings) -> EdgeLimits:
    """The HTTP edge limits a service's settings give (``PODIUM_HTTP_*``)."""
    return EdgeLimits(settings.http_max_header_bytes, settings.http_max_url_bytes,
                      settings.http_request_timeout_s)


class _Server(uvicorn.Server):
    """uvicorn's server, calling ``on_exit`` first thing when it stops (before it waits for
    open responses to finish)."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None] | None) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    async def shutdown(self, sockets: Any = None) -> None:
        if self._on_exit is not None:
            self._on_exit()
        await super().shutdown(sockets)


def serve(app: ASGIApp, host: str, port: int, log_level: str, limits: EdgeLimits,
          on_exit: Callable[[], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; uvicorn then stops accepting, finishes requests, runs lifespan
    shutdown (which closes Kafka and Redis clients). ``on_exit`` runs as the stop begins (the
    api ends its rank-change streams there, which would otherwise hold the stop).

    The server enforces the edge ``limits`` (head and URL size, time for a request to arrive)
    and never rewrites the client address from X-Forwarded-For: whether that header is trusted
    is the service's own setting (``PODIUM_{INGEST,API}_TRUST_FORWARDED_FOR``), nothing else."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        lifespan="on",
        timeout_graceful_shutdown=10,
        log_config=None,  # keep the root handler (and its format) configure_logging set up
        **{**SERVER_STACK, "http": edge_protocol(limits)},
        proxy_headers=False,
    )
    # uvicorn drains, then re-raises the signal it caught to the handler found before it ran:
    # make that one a clean exit, so a graceful stop exits 0 rather than "killed by SIGTERM".
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    _Server(config, on_exit).run()


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def tune_gc_for_batches() -> None:
    """Call once the process has loaded and built what it keeps until it exits: that is left
    out of later collections (``gc.freeze``), and collections run less often."""
    gc.collect()  # what is garbage already must not be frozen
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(BATCH_GC_THRESHOLD, second, third)


@contextmanager
def collections_paused() -> Iterator[None]:
    """The cyclic garbage collector off while the block runs: for a bounded stretch of work
    whose containers almost all live until its end (a step of the rating worker: tens of
    thousands of decoded votes, battles, tallies). Even at ``BATCH_GC_THRESHOLD`` each step ran
    dozens of collections that walked those live objects again and found nothing (~14 % of the
    worker's CPU on a catch-up, bench/RESULTS.md). Reference counting frees as before; cycles
    made meanwhile wait for the next collection after the block. Nests; the collector is left
    as it was found."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# Votes from which a step's pure phase (screen decision, fold, online Elo) runs in a thread: a
# catch-up's step of 50,000 votes held the event loop for hundreds of ms per phase (the probes
# waited), while the thread lets the loop in at every GIL switch (5 ms); a live batch of a few
# thousand votes stays on the loop (a thread costs ~0.1 ms a call).
OFF_LOOP_VOTES = 5_000

_P = ParamSpec("_P")
_R = TypeVar("_R")


async def off_the_loop(
    votes: int, work: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs
) -> _R:
    """``work(*args, **kwargs)``, in a thread when it is a phase over ``votes`` >=
    ``OFF_LOOP_VOTES`` votes (the event loop keeps answering), inline otherwise. Only for work
    on data no other task touches meanwhile (the rating worker holds its batch lock)."""
    if votes >= OFF_LOOP_VOTES:
        return await asyncio.to_thread(work, *args, **kwargs)
    return work(*args, **kwargs)
