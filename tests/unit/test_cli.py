"""The CLI's own logic that needs no services: rebuild delegates to the rating module."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from services.cli import app as cli


def test_rebuild_runs_the_rebuild_module_with_the_extra_arguments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli, "REBUILD_MODULE", "platform")  # a module that runs and exits 0
    assert CliRunner().invoke(cli.app, ["rebuild", "--terse"]).exit_code == 0
    monkeypatch.setattr(cli, "REBUILD_MODULE", "services.rating.no_such_module")
    result = CliRunner().invoke(cli.app, ["rebuild"])
    assert result.exit_code == 2 and "not installed" in result.output
