"""Kafka and Redis for the tests: the ones `make test` started, or started here once per run
through the project's deploy scripts; plus per-test settings with their own topics and keys."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Infra:
    kafka_bootstrap: str
    redis_url: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def kafka_broker(run_dir: Path, port: int, controller_port: int) -> Iterator[dict[str, str]]:
    """A Kafka broker of its own (for tests that stop and restart one), via deploy/kafka."""
    env = {
        **os.environ,
        "PODIUM_RUN_DIR": str(run_dir),
        "PODIUM_KAFKA_PORT": str(port),
        "PODIUM_KAFKA_CONTROLLER_PORT": str(controller_port),
        "PODIUM_KAFKA_HEAP": "256m",
    }
    script = str(ROOT / "deploy/kafka/kafka.sh")
    subprocess.run([script, "start"], env=env, check=True)
    try:
        yield env
    finally:
        subprocess.run([script, "stop"], env=env, check=False)


def kafka_script(env: dict[str, str], command: str) -> None:
    subprocess.run([str(ROOT / "deploy/kafka/kafka.sh"), command], env=env, check=True)


@contextmanager
def redis_server(run_dir: Path, port: int) -> Iterator[dict[str, str]]:
    """A Redis server of its own (for tests that stop and restart one), via deploy/redis."""
    env = {**os.environ, "PODIUM_RUN_DIR": str(run_dir), "PODIUM_REDIS_PORT": str(port)}
    redis_script(env, "start")
    try:
        yield env
    finally:
        subprocess.run([str(ROOT / "deploy/redis/redis.sh"), "stop"], env=env, check=False)


def redis_script(env: dict[str, str], command: str) -> None:
    subprocess.run([str(ROOT / "deploy/redis/redis.sh"), command], env=env, check=True)


@contextmanager
def session_infra() -> Iterator[Infra]:
    kafka = os.environ.get("PODIUM_TEST_KAFKA_BOOTSTRAP")
    redis_url = os.environ.get("PODIUM_TEST_REDIS_URL")
    if kafka and redis_url:
        yield Infra(kafka, redis_url)
        return
    run_dir = ROOT / ".run" / "pytest"
    kafka_port, redis_port = free_port(), free_port()
    env = {**os.environ, "PODIUM_RUN_DIR": str(run_dir), "PODIUM_REDIS_PORT": str(redis_port)}
    with kafka_broker(run_dir, kafka_port, free_port()):
        subprocess.run([str(ROOT / "deploy/redis/redis.sh"), "start"], env=env, check=True)
        try:
            yield Infra(f"127.0.0.1:{kafka_port}", f"redis://127.0.0.1:{redis_port}/0")
        finally:
            subprocess.run([str(ROOT / "deploy/redis/redis.sh"), "stop"], env=env, check=False)


ADMIN_TOKEN = "test-admin-token"
DEV_API_KEY = "test-dev-client-key-0123456789abcdef"
DEV_HEADERS = {"X-API-Key": DEV_API_KEY}


def unique_prefix() -> str:
    return "t" + uuid.uuid4().hex[:12]


def service_env(infra: Infra, prefix: str, **extra: str) -> dict[str, str]:
    """Environment for a service process isolated to this test's topics and keys."""
    return {
        "PODIUM_KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
        "PODIUM_REDIS_URL": infra.redis_url,
        "PODIUM_TOPIC_PREFIX": prefix + ".",
        "PODIUM_KEY_PREFIX": prefix,
        "PODIUM_RATING_APP_ID": prefix + "-rating",
        "PODIUM_INGEST_AUTO_REGISTER_MODELS": "true",
        "PODIUM_INGEST_ADMIN_TOKEN": ADMIN_TOKEN,
        # a client key is registered, but the existing tests post without one: the security
        # tests turn PODIUM_INGEST_REQUIRE_AUTH on (tests/integration/test_security.py)
        "PODIUM_DEV_API_KEY": DEV_API_KEY,
        "PODIUM_INGEST_REQUIRE_AUTH": "false",
        **extra,
    }
