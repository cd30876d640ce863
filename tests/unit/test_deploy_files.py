"""docker-compose.yml and deploy/k8s must stay consistent with the code they start."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import ApiSettings, IngestSettings, RatingSettings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {
    "ingest": IngestSettings, "rating": RatingSettings, "api": ApiSettings,
}
NON_PODIUM_ENV = {"OPENBLAS_NUM_THREADS"}


def known_env(service: str) -> set[str]:
    return {f"PODIUM_{name.upper()}" for name in SETTINGS[service].model_fields}


def module_exists(command: list[str]) -> bool:
    assert command[:2] == ["python", "-m"], command
    return importlib.util.find_spec(f"{command[2]}.__main__") is not None


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_compose_runs_every_service_with_real_modules_and_settings(compose: dict[str, Any]
                                                                    ) -> None:
    services = compose["services"]
    assert {"kafka", "redis", "ingest", "rating", "api"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert "--appendonly" in services["redis"]["command"]
    for name in ("ingest", "rating", "api"):
        svc = services[name]
        assert module_exists(svc["command"]), f"{name} command names a missing module"
        assert set(svc["environment"]) <= known_env(name), f"{name}: unknown setting"
        for dep in svc["depends_on"].values():
            assert dep["condition"] == "service_healthy"
    for name in ("kafka", "redis", "ingest", "rating", "api"):
        assert services[name]["healthcheck"]["test"], name
    assert "PODIUM_RATING_METRICS_PORT" in services["rating"]["environment"]


@pytest.fixture(scope="module")
def compose_cluster() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.cluster.yml").read_text())
    return data


def instances(services: dict[str, Any], name: str) -> list[str]:
    return sorted(s for s in services if s.rsplit("-", 1)[0] == name and s[-1].isdigit())


def test_compose_cluster_is_the_production_topology(compose_cluster: dict[str, Any]) -> None:
    """3 KRaft brokers (RF 3, min ISR 2), a Redis Cluster of 3 masters + 3 replicas, 2 ingest,
    2 rating, 2 api on the host ports of `make up TOPOLOGY=cluster` (docs/operations.md)."""
    services = compose_cluster["services"]
    brokers = instances(services, "kafka")
    assert brokers == ["kafka-1", "kafka-2", "kafka-3"]
    voters = {services[b]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for b in brokers}
    assert voters == {"1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}
    for n, b in enumerate(brokers, 1):
        env = services[b]["environment"]
        assert env["KAFKA_NODE_ID"] == n
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{b}:9092"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == 2
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == 2
    assert len({services[b]["environment"]["CLUSTER_ID"] for b in brokers}) == 1
    redis_nodes = instances(services, "redis")
    assert len(redis_nodes) == 6
    for r in redis_nodes:
        command = services[r]["command"]
        assert command[command.index("--cluster-enabled") + 1] == "yes"
        assert command[command.index("--appendonly") + 1] == "yes"
    init = " ".join(services["redis-cluster-init"]["command"])
    assert "--cluster-replicas 1" in init
    ports = {}
    for name, container_port in (("ingest", 8001), ("rating", 8002), ("api", 8000)):
        replicas = instances(services, name)
        assert len(replicas) == 2, name
        for r in replicas:
            svc = services[r]
            assert module_exists(svc["command"]), f"{r} command names a missing module"
            assert set(svc["environment"]) <= known_env(name), f"{r}: unknown setting"
            env = svc["environment"]
            assert env["PODIUM_KAFKA_BOOTSTRAP"] == ",".join(f"{b}:9092" for b in brokers)
            assert env["PODIUM_REDIS_URL"] == (
                "redis+cluster://" + ",".join(f"{n}:6379" for n in redis_nodes) + "/0")
            assert svc["depends_on"]["redis-cluster-init"]["condition"] == (
                "service_completed_successfully")
            [mapping] = svc["ports"]
            host, inside = mapping.split(":")
            assert int(inside) == container_port
            ports[r] = int(host)
            assert "/readyz" in " ".join(svc["healthcheck"]["test"])
    assert ports == {"ingest-1": 8001, "ingest-2": 8011, "rating-1": 8002, "rating-2": 8012,
                     "api-1": 8000, "api-2": 8010}
    partitions = int(services["rating-1"]["environment"]["PODIUM_VOTES_PARTITIONS"])
    assert partitions >= 2, "each of the two workers needs a partition"


def test_compose_config_validates_when_docker_is_present() -> None:
    if shutil.which("docker") is None:
        pytest.skip("no docker client on this machine")
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if plugin.returncode != 0:
        pytest.skip("docker client without the compose plugin (the YAML checks above still ran)")
    for name in ("docker-compose.yml", "docker-compose.cluster.yml"):
        result = subprocess.run(["docker", "compose", "-f", str(ROOT / name), "config", "-q"],
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{name}: {result.stderr}"


def k8s_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((ROOT / "deploy/k8s").glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def test_k8s_deployments_are_consistent() -> None:
    docs = k8s_documents()
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    assert set(deployments) == {"podium-api", "podium-ingest", "podium-rating"}
    assert deployments["podium-api"]["spec"]["replicas"] >= 2
    for name, dep in deployments.items():
        service = name.removeprefix("podium-")
        [container] = dep["spec"]["template"]["spec"]["containers"]
        assert module_exists(container["command"])
        env = {e["name"] for e in container.get("env", [])} | set(config["data"])
        assert env - NON_PODIUM_ENV <= known_env(service), f"{name}: unknown setting"
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        [port] = container["ports"]
        assert container["readinessProbe"]["httpGet"]["port"] == port["name"]
        annotations = dep["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(port["containerPort"])
        if service in ("api", "ingest"):
            assert services[name]["spec"]["selector"].items() <= labels.items()
    # the production topology of docker-compose.cluster.yml: at least as many of each
    replicas = {name.removeprefix("podium-"): d["spec"]["replicas"]
                for name, d in deployments.items()}
    assert replicas["ingest"] >= 2 and replicas["rating"] >= 2 and replicas["api"] >= 2
    assert replicas["rating"] <= int(config["data"]["PODIUM_VOTES_PARTITIONS"]), (
        "a rating replica beyond the partitions would sit idle")
