"""``make run`` (deploy/stack.sh run): the whole system with the demo stream on ports of its
own, live standings, and a SIGTERM to the script alone (as a process supervisor sends it, not
a terminal's Ctrl-C to the whole group) stops everything it started."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.support.infra import free_port

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def test_make_run_serves_live_standings_and_a_sigterm_stops_everything(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}
    run_dir = tmp_path / "run"
    api_port = free_port()
    env.update(
        PODIUM_RUN_DIR=str(run_dir), PODIUM_CACHE_DIR=str(ROOT / ".cache"),
        PODIUM_KAFKA_PORT=str(free_port()), PODIUM_KAFKA_CONTROLLER_PORT=str(free_port()),
        PODIUM_REDIS_PORT=str(free_port()), PODIUM_INGEST_PORT=str(free_port()),
        PODIUM_API_PORT=str(api_port), PODIUM_RATING_METRICS_PORT=str(free_port()),
        PODIUM_DEMO_RATE="100",
    )
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen(["bash", str(ROOT / "deploy/stack.sh"), "run"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pids: dict[str, int] = {}
    try:
        board = f"http://127.0.0.1:{api_port}/v1/leaderboards/text/overall"
        deadline = time.monotonic() + 180
        votes = 0
        while votes == 0:
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "run.log").read_text()[-3000:]
            try:
                r = httpx.get(board, timeout=2)
                votes = r.json()["votes"] if r.status_code == 200 else 0
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        output = (tmp_path / "run.log").read_text()
        assert f"Live leaderboard: http://127.0.0.1:{api_port}/" in output
        for pidfile in run_dir.glob("*.pid"):
            pids[pidfile.stem] = int(pidfile.read_text())
        assert {"ingest", "rating", "api", "kafka", "redis"} <= set(pids), pids
        proc.send_signal(signal.SIGTERM)  # the script only, not its process group
        assert proc.wait(120) == 0
        assert "stopping everything" in (tmp_path / "run.log").read_text()
        still = {name: pid for name, pid in pids.items() if _alive(pid)}
        assert not still, f"left running after SIGTERM: {still}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in pids.values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()
