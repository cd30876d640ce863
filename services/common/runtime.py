"""Process plumbing shared by the service entrypoints: logging and serving an ASGI app."""

from __future__ import annotations

import logging
import signal
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
import uvicorn
from starlette.types import ASGIApp

from services.common.logcontext import current_context

# The server stack of every service, and of the bare references the HTTP benchmarks compare
# them with (bench/reference_apps.py uses these too): explicit, so "auto" cannot pick another.
SERVER_STACK: dict[str, Any] = {"http": "httptools", "loop": "uvloop", "access_log": False,
                                "backlog": 2048}

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


def serve(app: ASGIApp, host: str, port: int, log_level: str) -> None:
    """Serve until SIGINT/SIGTERM; uvicorn then stops accepting, finishes requests, runs lifespan
    shutdown (which closes Kafka and Redis clients)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        lifespan="on",
        timeout_graceful_shutdown=10,
        log_config=None,  # keep the root handler (and its format) configure_logging set up
        **SERVER_STACK,
    )
    # uvicorn drains, then re-raises the signal it caught to the handler found before it ran:
    # make that one a clean exit, so a graceful stop exits 0 rather than "killed by SIGTERM".
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    uvicorn.Server(config).run()


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)
