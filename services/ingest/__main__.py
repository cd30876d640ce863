"""Entrypoint: ``python -m services.ingest`` (settings from PODIUM_* env)."""

from __future__ import annotations

from services.common.runtime import configure_logging, serve
from services.ingest.app import create_app
from services.ingest.fastpath import VoteFastPath
from shared.settings import IngestSettings


def main() -> None:
    settings = IngestSettings()
    configure_logging(settings.log_level, "ingest", settings.log_format)
    app = VoteFastPath(create_app(settings), settings)  # the hot write skips FastAPI's routing
    serve(app, settings.ingest_host, settings.ingest_port, settings.log_level)


if __name__ == "__main__":
    main()
