"""The ``podium`` command line (typer): see ``services.cli.app``."""
