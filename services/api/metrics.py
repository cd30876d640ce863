"""The api's Prometheus metrics: the HTTP ones every service has, and its open streams."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from services.common.metrics import HttpMetrics


class ApiMetrics(HttpMetrics):
    """Open rank-change streams besides the HTTP metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry or CollectorRegistry(), "api")
        self.stream_clients = Gauge(
            "podium_api_stream_clients", "Open rank-change streams (SSE and WebSocket).",
            registry=self.registry,
        )
