"""The production topology's infrastructure for tests: three KRaft brokers and a Redis Cluster
(3 masters + 3 replicas), started through the project's scripts (``deploy/stack.sh up
--cluster-infra``) on ports of their own, with a handle to crash and restart single nodes."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.infra import ROOT, free_port

KAFKA_NODES = 3
REDIS_NODES = 6
# Short failure detection so a test sees a failover within seconds (deploy defaults are
# longer): a silent Redis master is replaced after 2 s, a silent broker fenced after 4 s.
REDIS_NODE_TIMEOUT_MS = 2000
KAFKA_SESSION_TIMEOUT_MS = 4000


def distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@dataclass
class Cluster:
    """A running cluster topology's infrastructure (the scripts' run dir and ports)."""

    run_dir: Path
    kafka_ports: list[int]
    controller_ports: list[int]
    redis_ports: list[int]
    redis_bus_ports: list[int]
    log: list[str] = field(default_factory=list)

    @classmethod
    def on_free_ports(cls, run_dir: Path) -> Cluster:
        ports = distinct_free_ports(2 * KAFKA_NODES + 2 * REDIS_NODES)
        k, r = KAFKA_NODES, REDIS_NODES
        return cls(run_dir, ports[:k], ports[k:2 * k], ports[2 * k:2 * k + r], ports[2 * k + r:])

    @property
    def env(self) -> dict[str, str]:
        """The scripts' environment: this cluster's run dir and ports, no other PODIUM_*."""
        def joined(ports: list[int]) -> str:
            return ",".join(map(str, ports))

        base = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}
        return {
            **base,
            "PODIUM_RUN_DIR": str(self.run_dir),
            "PODIUM_CACHE_DIR": str(ROOT / ".cache"),
            "PODIUM_KAFKA_NODES": str(KAFKA_NODES),
            "PODIUM_KAFKA_PORTS": joined(self.kafka_ports),
            "PODIUM_KAFKA_CONTROLLER_PORTS": joined(self.controller_ports),
            "PODIUM_KAFKA_BROKER_SESSION_TIMEOUT_MS": str(KAFKA_SESSION_TIMEOUT_MS),
            "PODIUM_REDIS_CLUSTER_PORTS": joined(self.redis_ports),
            "PODIUM_REDIS_CLUSTER_BUS_PORTS": joined(self.redis_bus_ports),
            "PODIUM_REDIS_CLUSTER_NODE_TIMEOUT_MS": str(REDIS_NODE_TIMEOUT_MS),
        }

    @property
    def kafka_bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.kafka_ports)

    @property
    def redis_seeds(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", p) for p in self.redis_ports]

    @property
    def redis_url(self) -> str:
        """The services' form (deploy/stack.sh, docs/operations.md): every node a seed, db 0."""
        return "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in self.redis_seeds) + "/0"

    def _run(self, *command: str) -> str:
        result = subprocess.run(list(command), env=self.env, cwd=ROOT, capture_output=True,
                                text=True, check=False)
        self.log.append(result.stderr)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n"
                               f"{result.stdout}\n{result.stderr}")
        return result.stdout

    def _stack(self, command: str) -> str:
        return self._run(str(ROOT / "deploy/stack.sh"), command, *(
            ["--cluster-infra"] if command == "up" else []))

    def _kafka(self, *args: str) -> str:
        return self._run(str(ROOT / "deploy/kafka/kafka.sh"), *args)

    def _redis(self, *args: str) -> str:
        return self._run(str(ROOT / "deploy/redis/redis-cluster.sh"), *args)

    def start(self) -> None:
        """Start whatever is not running and wait until every node is ready."""
        self._stack("up")

    def stop(self) -> None:
        self._stack("down")

    def pids(self) -> dict[str, int]:
        """PID of each node that has a PID file (kafka-N, redis-cluster-N)."""
        return {f.stem: int(f.read_text()) for f in self.run_dir.glob("*.pid")
                if f.read_text().strip()}

    def all_running(self) -> bool:
        pids = self.pids()
        return len(pids) == KAFKA_NODES + REDIS_NODES and all(map(alive, pids.values()))

    def ensure_running(self) -> None:
        if not self.all_running():
            self.start()

    def kill_broker(self, node: int) -> None:
        """SIGKILL broker ``node`` (1..3); its data dir stays for a restart."""
        self._kafka("kill-node", str(node))

    def stop_broker(self, node: int) -> None:
        self._kafka("stop-node", str(node))

    def restart_broker(self, node: int) -> None:
        """Start broker ``node`` again and wait until it answers a metadata request."""
        self._kafka("start-node", str(node))

    def redis_masters(self) -> list[int]:
        """Numbers (1..6) of the Redis nodes that are masters now."""
        return [int(n) for n in self._redis("masters").split()]

    def kill_redis_node(self, node: int) -> None:
        self._redis("kill-node", str(node))

    def kill_redis_master(self) -> int:
        """SIGKILL one master; returns its node number (its replica takes over)."""
        node = self.redis_masters()[0]
        self.kill_redis_node(node)
        return node

    def restart_redis_node(self, node: int) -> None:
        """Start Redis node ``node`` again and wait until it is back in the cluster, in sync."""
        self._redis("start-node", str(node))


def alive(pid: int) -> bool:
    """True for a running process (a zombie waiting to be reaped is not running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@contextmanager
def running_cluster() -> Iterator[Cluster]:
    """A cluster of this test session's own, stopped (and its data removed) at the end."""
    run_dir = ROOT / ".run" / f"pytest-cluster-{uuid.uuid4().hex[:8]}"
    cluster = Cluster.on_free_ports(run_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        pids = cluster.pids()
        cluster.stop()
        left = {name: pid for name, pid in pids.items() if alive(pid)}
        for pid in left.values():
            os.kill(pid, 9)
        assert not left, f"left running after deploy/stack.sh down: {left}"
        subprocess.run(["rm", "-rf", *map(str, run_dir.glob("*-data")),
                        *map(str, run_dir.glob("redis-cluster-[0-9]"))], check=False)
