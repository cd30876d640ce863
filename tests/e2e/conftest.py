"""The three services as processes, for the live-stream tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.infra import Infra, service_env
from tests.support.processes import ServiceProcess, running_stack


@pytest.fixture
async def live_stack(infra: Infra, prefix: str) -> AsyncIterator[dict[str, ServiceProcess]]:
    env = service_env(infra, prefix, PODIUM_API_HEARTBEAT_S="1",
                      PODIUM_RATING_HISTORY_INTERVAL_S="1", PODIUM_RATING_BATCH_WITHIN_S="0.02")
    async with running_stack(env, prefix) as services:
        yield services
