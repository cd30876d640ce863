"""Shared by the end-to-end benchmarks: Kafka + Redis via the deploy scripts (own run dir and
ports), Podium services as processes, a unique prefix per run."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.infra import Infra, free_port, service_env, unique_prefix  # noqa: E402
from tests.support.processes import ServiceProcess  # noqa: E402


@dataclass
class Stack:
    infra: Infra
    prefix: str
    services: dict[str, ServiceProcess]


def run_dir() -> Path:
    """This benchmark process's run dir (Kafka's and Redis's pid files, logs and data)."""
    return ROOT / ".run" / "bench" / str(os.getpid())  # benchmarks may run side by side


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def infra_pids() -> dict[str, int]:
    """The pids of this run's Kafka broker and Redis server."""
    return {name: int((run_dir() / f"{name}.pid").read_text())
            for name in ("kafka", "redis")}


@asynccontextmanager
async def infra() -> AsyncIterator[Infra]:
    """Kafka and Redis for a benchmark run (stopped afterwards)."""
    kafka_port, redis_port = free_port(), free_port()
    env = {**os.environ, "PODIUM_RUN_DIR": str(run_dir()), "PODIUM_KAFKA_PORT": str(kafka_port),
           "PODIUM_KAFKA_CONTROLLER_PORT": str(free_port()), "PODIUM_REDIS_PORT": str(redis_port)}
    subprocess.run(["rm", "-rf", str(run_dir())], check=True)
    subprocess.run([str(ROOT / "deploy/kafka/kafka.sh"), "start"], env=env, check=True)
    subprocess.run([str(ROOT / "deploy/redis/redis.sh"), "start"], env=env, check=True)
    try:
        yield Infra(f"127.0.0.1:{kafka_port}", f"redis://127.0.0.1:{redis_port}/0")
    finally:
        subprocess.run([str(ROOT / "deploy/redis/redis.sh"), "stop"], env=env, check=False)
        subprocess.run([str(ROOT / "deploy/kafka/kafka.sh"), "stop"], env=env, check=False)
        subprocess.run(["rm", "-rf", str(run_dir())], check=False)


@asynccontextmanager
async def stack(running: Infra, names: tuple[str, ...] = ("ingest", "rating", "api"),
                **extra_env: str) -> AsyncIterator[Stack]:
    prefix = unique_prefix()
    env = service_env(running, prefix, **{"PODIUM_LOG_LEVEL": "WARNING", **extra_env})
    services: dict[str, ServiceProcess] = {}
    try:
        for i, name in enumerate(names):  # a name given twice: the second is "{name}-2", ...
            seen = names[:i].count(name)
            key = f"{name}-{seen + 1}" if seen else name
            services[key] = await ServiceProcess(name, env, log_name=f"bench-{key}").start()
        yield Stack(running, prefix, services)
    finally:
        for s in services.values():
            s.stop()
