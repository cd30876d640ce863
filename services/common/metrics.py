"""What the services' Prometheus metrics share: one registry per app (no process-global state,
so tests may run several apps in one process), the HTTP metrics every HTTP service has
(``HttpMetrics``), the exposition, and the HTTP middleware that measures requests and carries
the request id. Each service's own metrics are in its package: services/ingest/metrics.py,
services/api/metrics.py, services/rating/metrics.py."""

from __future__ import annotations

import time
import uuid

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.logcontext import request_id_var

__all__ = [
    "CONTENT_TYPE_LATEST",
    "HttpMetrics",
    "RequestContextMiddleware",
    "metrics_response",
]

# No ``*_created`` series: they double the output and Prometheus does not need them.
disable_created_metrics()  # type: ignore[no-untyped-call]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 5, 10, 50, 100, 500, 1000, 2500, 5000, 10_000)
REQUEST_ID_HEADER = "x-request-id"


class HttpMetrics:
    """Requests by route template, method and status, and their latency."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.registry = registry
        self.requests = Counter(
            f"podium_{service}_http_requests", "HTTP requests answered.",
            ["method", "route", "status"], registry=registry,
        )
        self.latency = Histogram(
            f"podium_{service}_http_request_seconds", "Time to answer an HTTP request "
            "(streams: until the headers are sent).", ["method", "route"],
            buckets=LATENCY_BUCKETS, registry=registry,
        )


def metrics_response(registry: CollectorRegistry) -> Response:
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestContextMiddleware:
    """Outermost middleware: takes the request id from ``X-Request-ID`` (or makes one), makes it
    visible to logs (contextvar) and echoes it back, and records request count and latency."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                request_id = value.decode("latin-1")[:128]
        request_id = request_id or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500 if scope["type"] == "http" else 101
        answered = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "websocket.http.response.start":  # a refused upgrade
                status = message["status"]
            elif message["type"] == "http.response.start":
                status = message["status"]
                answered = True
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode("latin-1")))
                message = {**message, "headers": headers}
                self._observe(scope, message["status"], started)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # escaping to Starlette's ServerErrorMiddleware, outside this one, which answers
            # 500 on the server's own send: counted here, or it would never be
            if not answered and scope["type"] == "http":
                self._observe(scope, 500, started)
            raise
        finally:
            request_id_var.reset(token)
            if scope["type"] == "websocket":
                self._observe(scope, status, started)

    def _observe(self, scope: Scope, status: int, started: float) -> None:
        method = scope.get("method", "WS")
        route = _route_of(scope)
        if route == "/metrics":
            return
        self.metrics.requests.labels(method, route, str(status)).inc()
        self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
