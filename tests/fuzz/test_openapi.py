"""Schemathesis against the ingest (auth on, with a client key) and api OpenAPI documents of the
running services: no input may cause a 5xx or a crash."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import BaseSchema

from tests.support.infra import ADMIN_TOKEN, DEV_API_KEY, Infra, service_env
from tests.support.processes import ServiceProcess

EXAMPLES = 25


def _no_server_error(response: schemathesis.Response, case: schemathesis.Case) -> None:
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    )


@pytest.fixture(scope="module")
async def stack(infra: Infra) -> AsyncIterator[dict[str, ServiceProcess]]:
    env = service_env(infra, "fz" + uuid.uuid4().hex[:8],
                      PODIUM_INGEST_REQUIRE_AUTH="true")
    services: dict[str, ServiceProcess] = {}
    try:
        for name in ("ingest", "api"):
            services[name] = await ServiceProcess(name, env, log_name=f"{name}-fuzz").start()
        yield services
    finally:
        for s in services.values():
            s.stop()


_settings = settings(max_examples=EXAMPLES, deadline=None, database=None,
                     suppress_health_check=list(HealthCheck))


def fuzz(schema: BaseSchema, headers_for: Callable[[str], dict[str, str]]) -> int:
    """Every operation of the schema with bounded hypothesis examples; returns how many ran."""
    ran = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @_settings
        def check(case: schemathesis.Case) -> None:
            response = case.call(headers=headers_for(case.path), timeout=30)
            _no_server_error(response, case)

        check()
        ran += 1
    return ran


def test_ingest_never_fails(stack: dict[str, ServiceProcess]) -> None:
    schema = schemathesis.openapi.from_url(f"{stack['ingest'].url}/openapi.json")

    def headers(path: str) -> dict[str, str]:
        key = ADMIN_TOKEN if path.startswith("/v1/admin") else DEV_API_KEY
        return {"authorization": f"Bearer {key}"}

    assert fuzz(schema, headers) >= 8
    paths = schema.raw_schema["paths"]
    for write in ("/v1/votes", "/v1/votes/batch", "/v1/scores", "/v1/scores/batch"):
        assert "415" in paths[write]["post"]["responses"], f"{write} documents its 415"


def test_api_never_fails(stack: dict[str, ServiceProcess]) -> None:
    schema = schemathesis.openapi.from_url(f"{stack['api'].url}/openapi.json")
    schema = schema.exclude(path_regex=r"/events/|/ws/")  # endless streams
    assert fuzz(schema, lambda _: {}) >= 8
