"""Process plumbing shared by the service entrypoints: logging and serving an ASGI app."""

from __future__ import annotations

import logging
import sys

import uvicorn
from fastapi import FastAPI


def configure_logging(level: str, service: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def serve(app: FastAPI, host: str, port: int, log_level: str) -> None:
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
    uvicorn.Server(config).run()
