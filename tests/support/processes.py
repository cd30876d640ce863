"""Podium services as real processes (``python -m services.X``) for integration and e2e tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from tests.support.infra import ROOT, free_port
from tests.support.wait import wait_until

ARTIFACTS = ROOT / "test-artifacts"
# The HTTP port of each service (rating: its health and metrics endpoint).
PORT_SETTING = {"ingest": "PODIUM_INGEST_PORT", "api": "PODIUM_API_PORT",
                "rating": "PODIUM_RATING_METRICS_PORT"}


class ServiceProcess:
    def __init__(self, name: str, env: dict[str, str], log_name: str | None = None) -> None:
        self.name = name
        self.port = free_port() if name in PORT_SETTING else None
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        if self.port is not None:
            self.env[PORT_SETTING[name]] = str(self.port)
        ARTIFACTS.mkdir(exist_ok=True)
        self.log_path: Path = ARTIFACTS / f"{log_name or name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, ready_path: str = "/readyz") -> ServiceProcess:
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name}"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if self.port is not None:
            async with httpx.AsyncClient(base_url=self.url, timeout=2) as client:

                async def healthy() -> bool:
                    assert self.proc is not None
                    if self.proc.poll() is not None:
                        raise RuntimeError(f"{self.name} exited with code {self.proc.returncode}; "
                                           f"see {self.log_path}")
                    return (await client.get(ready_path)).status_code == 200

                await wait_until(healthy, 60, f"{self.name} {ready_path}")
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@contextlib.asynccontextmanager
async def running_stack(
    env: dict[str, str], prefix: str, names: tuple[str, ...] = ("ingest", "rating", "api")
) -> AsyncIterator[dict[str, ServiceProcess]]:
    """The services as processes with ``env``; stopped with SIGTERM at the end, and every one
    must exit 0 (a graceful shutdown is part of what the tests check)."""
    services: dict[str, ServiceProcess] = {}
    try:
        for name in names:
            services[name] = await ServiceProcess(name, env, log_name=f"{name}-{prefix}").start()
        yield services
    finally:
        codes = {name: s.stop() for name, s in services.items()}
        assert all(code == 0 for code in codes.values()), f"unclean shutdown: {codes}"
