"""deploy/kafka/kafka.sh on a machine without Java or Maven installs them from Debian's packages
(waiting for a held apt/dpkg lock and retrying), as redis.sh does for redis-server.

apt-get, java and mvn are stand-ins on a PATH of their own (a unit test of the script's logic:
the real packages are installed on this machine, and a test must not run apt for real)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("bash", "cat", "date", "dirname", "basename", "mkdir", "rm", "touch", "ls", "wc",
         "sleep", "flock", "env", "seq", "tr", "sed", "tail", "grep", "chmod")

# A stand-in apt-get: logs its arguments; "install P" puts P's command on the PATH. With
# FAIL_FIRST it fails its first run, as apt-get does while another run holds the lock.
APT_GET = """#!/bin/bash
echo "apt-get $*" >>"$STUB_LOG"
if [[ -n "${FAIL_FIRST:-}" && ! -e "$STUB_DIR/failed-once" ]]; then
  touch "$STUB_DIR/failed-once"
  echo "E: Could not get lock /var/lib/dpkg/lock-frontend" >&2; exit 100
fi
for arg in "$@"; do
  case "$arg" in
    openjdk-17-jre-headless) cmd=java ;;
    maven) cmd=mvn ;;
    *) continue ;;
  esac
  printf '#!/bin/bash\\necho %s "$@" >>"$STUB_LOG"\\n' "$cmd" >"$STUB_DIR/$cmd"
done
chmod +x "$STUB_DIR"/* 2>/dev/null
exit 0
"""


def bare_machine(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH has the basic tools and a stand-in apt-get, no java or mvn."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (stubs / tool).symlink_to(found)
    (stubs / "apt-get").write_text(APT_GET)
    (stubs / "apt-get").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}
    env.update(PATH=str(stubs), STUB_DIR=str(stubs), STUB_LOG=str(tmp_path / "calls.log"),
               PODIUM_RUN_DIR=str(tmp_path / "run"), PODIUM_CACHE_DIR=str(tmp_path / "cache"),
               PODIUM_APT_RETRY_S="0", TMPDIR=str(tmp_path))
    return env


def fetch(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "deploy/kafka/kafka.sh"), "fetch"], env=env,
                          capture_output=True, text=True, check=False, timeout=60)


def test_missing_java_and_maven_are_installed_from_debian(tmp_path: Path) -> None:
    env = bare_machine(tmp_path)
    result = fetch(env)
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    installs = [c for c in calls if " install " in c]
    assert len(installs) == 2, calls
    assert installs[0].endswith("openjdk-17-jre-headless")
    assert installs[1].endswith("maven")
    assert all("DPkg::Lock::Timeout=" in c for c in calls if c.startswith("apt-get"))
    assert any(c.startswith("mvn ") and "dependency:copy-dependencies" in c for c in calls)
    assert (tmp_path / "cache/kafka/libs/.complete").exists()


def test_a_held_package_lock_is_waited_out_and_retried(tmp_path: Path) -> None:
    env = bare_machine(tmp_path)
    env["FAIL_FIRST"] = "1"
    result = fetch(env)
    assert result.returncode == 0, result.stderr
    assert "retrying" in result.stderr
    assert (tmp_path / "bin/java").exists() and (tmp_path / "bin/mvn").exists()


def test_java_present_means_no_apt_run(tmp_path: Path) -> None:
    env = bare_machine(tmp_path)
    for name in ("java", "mvn"):
        (tmp_path / "bin" / name).write_text("#!/bin/bash\n")
        (tmp_path / "bin" / name).chmod(0o755)
    assert fetch(env).returncode == 0
    assert not (tmp_path / "calls.log").exists()
