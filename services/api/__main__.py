"""Entrypoint: ``python -m services.api`` (settings from PODIUM_* env)."""

from __future__ import annotations

from services.api.app import create_app
from services.common.runtime import configure_logging, edge_limits, serve
from shared.settings import ApiSettings


def main() -> None:
    settings = ApiSettings()
    configure_logging(settings.log_level, "api", settings.log_format)
    serve(create_app(settings), settings.api_host, settings.api_port, settings.log_level,
          edge_limits(settings))


if __name__ == "__main__":
    main()
