"""The three services as processes, for the live-stream tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.infra import Infra, service_env
from tests.support.processes import ServiceProcess


@pytest.fixture
async def live_stack(infra: Infra, prefix: str) -> AsyncIterator[dict[str, ServiceProcess]]:
    env = service_env(infra, prefix, PODIUM_API_HEARTBEAT_S="1",
                      PODIUM_RATING_HISTORY_INTERVAL_S="1", PODIUM_RATING_BATCH_WITHIN_S="0.02")
    services: dict[str, ServiceProcess] = {}
    try:
        for name in ("ingest", "rating", "api"):
            services[name] = await ServiceProcess(name, env, log_name=f"{name}-{prefix}").start()
        yield services
    finally:
        codes = {name: s.stop() for name, s in services.items()}
        assert all(code == 0 for code in codes.values()), f"unclean shutdown: {codes}"
