"""Entrypoint: ``python -m services.api`` (settings from PODIUM_* env)."""

from __future__ import annotations

from services.api.app import create_app, end_streams
from services.common.runtime import configure_logging, edge_limits, serve
from shared.settings import ApiSettings


def main() -> None:
    settings = ApiSettings()
    configure_logging(settings.log_level, "api", settings.log_format)
    app = create_app(settings)  # the whole app: the board fast path in front of FastAPI
    serve(app, settings.api_host, settings.api_port, settings.log_level,
          edge_limits(settings), on_exit=lambda: end_streams(app.app))


if __name__ == "__main__":
    main()
