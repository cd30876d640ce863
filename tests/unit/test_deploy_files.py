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


def test_compose_config_validates_when_docker_is_present() -> None:
    if shutil.which("docker") is None:
        pytest.skip("no docker client on this machine")
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if plugin.returncode != 0:
        pytest.skip("docker client without the compose plugin (the YAML checks above still ran)")
    result = subprocess.run(["docker", "compose", "-f", str(ROOT / "docker-compose.yml"),
                             "config", "-q"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


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
