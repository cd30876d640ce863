"""Process plumbing shared by the service entrypoints: logging and serving an ASGI app."""

from __future__ import annotations

import logging
import signal
import sys

import uvicorn
from starlette.types import ASGIApp


def configure_logging(level: str, service: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def serve(app: ASGIApp, host: str, port: int, log_level: str) -> None:
    """Serve until SIGINT/SIGTERM; uvicorn then stops accepting, finishes requests, runs lifespan
    shutdown (which closes Kafka and Redis clients)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    # uvicorn drains, then re-raises the signal it caught to the handler found before it ran:
    # make that one a clean exit, so a graceful stop exits 0 rather than "killed by SIGTERM".
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    uvicorn.Server(config).run()


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)
