"""The rating worker's small HTTP endpoint: ``/healthz``, ``/readyz`` (Kafka and Redis
reachable) and ``/metrics`` (batch sizes, apply and refit latency, consumer lag).

The worker runs faust with its web server off; this is an aiohttp server (aiohttp comes with
faust) started and stopped with the faust app as one of its services.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from aiokafka.errors import KafkaError
from prometheus_client import generate_latest

from services.common.health import KafkaProbe, redis_ready
from services.common.metrics import CONTENT_TYPE_LATEST
from services.common.redis_client import connect as redis_connect
from services.rating.metrics import RatingMetrics
from shared.settings import RatingSettings

log = logging.getLogger(__name__)


class HealthServer:
    """The server and the clients its probes use; ``start`` and ``stop`` are awaited by the
    faust service that owns it."""

    def __init__(self, settings: RatingSettings, metrics: RatingMetrics,
                 catching_up: Callable[[], dict[str, dict[str, int]] | None] | None = None
                 ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._catching_up = catching_up
        self._probe = KafkaProbe(settings.kafka_bootstrap)
        self._redis = redis_connect(settings.redis_url, socket_timeout=2)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        return app

    async def start(self) -> None:
        s = self._settings
        runner = web.AppRunner(self._app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, s.rating_metrics_host, s.rating_metrics_port)
        await site.start()
        self._runner = runner
        self.port = s.rating_metrics_port
        log.info("health and metrics on http://%s:%d/metrics", s.rating_metrics_host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self._probe.close()
        await self._redis.aclose()

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        redis = await redis_ready(self._redis)
        kafka = await self._probe.reachable()
        restoring = self._metrics.restore.in_progress  # a system of record replayed into Redis
        body: dict[str, object] = {"kafka": kafka, "redis": redis, "restoring": restoring}
        catching_up = self._catching_up() if self._catching_up is not None else None
        if catching_up is not None:  # rewound partitions re-reading the log (resume.py)
            body["catching_up"] = catching_up
        ready = kafka and redis and not restoring and catching_up is None
        return web.json_response(body, status=200 if ready else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        await self.refresh_lag()
        return web.Response(body=generate_latest(self._metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def refresh_lag(self) -> None:
        s = self._settings
        try:
            lag = await self._probe.group_lag(s.rating_app_id, s.topics.votes)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.debug("consumer lag unavailable: %r", exc)
            return
        for partition, behind in lag.items():
            self._metrics.consumer_lag.labels(str(partition)).set(behind)
