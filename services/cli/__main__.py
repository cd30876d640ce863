"""Entrypoint: ``podium ...`` or ``python -m services.cli ...``."""

from __future__ import annotations

from services.cli.app import app


def main() -> None:
    app()


if __name__ == "__main__":
    main()
