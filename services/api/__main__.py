"""Entrypoint: ``python -m services.api`` (settings from PODIUM_* env)."""

from __future__ import annotations

from services.api.app import create_app, end_streams
from services.api.fastpath import BoardFastPath
from services.common.runtime import configure_logging, edge_limits, serve
from shared.settings import ApiSettings


def main() -> None:
    settings = ApiSettings()
    configure_logging(settings.log_level, "api", settings.log_format)
    api = create_app(settings)
    app = BoardFastPath(api)  # the hot read skips FastAPI's routing
    serve(app, settings.api_host, settings.api_port, settings.log_level,
          edge_limits(settings), on_exit=lambda: end_streams(api))


if __name__ == "__main__":
    main()
