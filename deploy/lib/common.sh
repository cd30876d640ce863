# Shared helpers for the deploy scripts: paths, PID files, waiting with a deadline.
# shellcheck shell=bash
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RUN_DIR="${PODIUM_RUN_DIR:-$ROOT/.run}"
CACHE_DIR="${PODIUM_CACHE_DIR:-$ROOT/.cache}"
mkdir -p "$RUN_DIR"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# pid_alive FILE -> true when FILE names a running process
pid_alive() {
  local f="$1"
  [[ -f "$f" ]] || return 1
  local pid; pid="$(cat "$f" 2>/dev/null)"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  # a killed process whose parent has not reaped it yet still answers kill -0
  [[ "$(ps -o stat= -p "$pid" 2>/dev/null)" != Z* ]]
}

# port_open PORT -> true when something accepts TCP connections on 127.0.0.1:PORT
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# stop_pidfile NAME FILE [SECONDS]: SIGTERM, wait, then SIGKILL; removes FILE.
stop_pidfile() {
  local name="$1" f="$2" wait_s="${3:-30}"
  if ! pid_alive "$f"; then rm -f "$f"; log "$name: not running"; return 0; fi
  local pid; pid="$(cat "$f")"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + wait_s))
  while kill -0 "$pid" 2>/dev/null; do
    if (( SECONDS >= deadline )); then
      log "$name: still running after ${wait_s}s, sending SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; break
    fi
    sleep 0.2
  done
  rm -f "$f"
  log "$name: stopped (pid $pid)"
}
