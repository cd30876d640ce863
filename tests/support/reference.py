"""Where the arena-rank reference environment is (the comparison tests run fits in it)."""

from __future__ import annotations

import os

import pytest

MISSING = (
    "PODIUM_ARENA_RANK_PYTHON is not set: it must name the python of a venv with "
    "deploy/reference/requirements-arena-rank.txt installed (make test sets it)"
)


def arena_rank_python() -> str:
    """The reference environment's interpreter. Without it the comparison tests are skipped
    locally, but fail under CI (``CI`` set): a CI run that compared nothing must not pass."""
    python = os.environ.get("PODIUM_ARENA_RANK_PYTHON")
    if python:
        return python
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(MISSING + "; CI must run the comparison")
    pytest.skip(MISSING)
