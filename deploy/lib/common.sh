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

# pid_gone PID -> true when PID has exited and released what it held (sockets, files). A
# SIGKILLed multi-threaded process (a JVM) shows its main thread as a zombie while the other
# threads are still being torn down and its listening sockets still accept; it is gone when
# kill -0 fails or it is a zombie with no thread left but the main one.
pid_gone() {
  local pid="$1"
  kill -0 "$pid" 2>/dev/null || return 0
  [[ "$(ps -o stat= -p "$pid" 2>/dev/null)" == Z* ]] || return 1
  local tasks=(/proc/"$pid"/task/*)
  [[ ! -e "${tasks[0]}" ]] || (( ${#tasks[@]} <= 1 ))
}

# wait_gone NAME PID SECONDS: wait until pid_gone PID, or die after SECONDS.
wait_gone() {
  local name="$1" pid="$2" deadline=$((SECONDS + $3))
  until pid_gone "$pid"; do
    (( SECONDS < deadline )) || die "$name: pid $pid still there ${3}s after SIGKILL"
    sleep 0.05
  done
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
  while ! pid_gone "$pid"; do
    if (( SECONDS >= deadline )); then
      log "$name: still running after ${wait_s}s, sending SIGKILL"; kill -KILL "$pid" 2>/dev/null || true
      wait_gone "$name" "$pid" 10; break
    fi
    sleep 0.2
  done
  rm -f "$f"
  log "$name: stopped (pid $pid)"
}

# stop_pidfiles NAME:FILE...: stop_pidfile for each, all at once (a KRaft quorum or a Redis
# Cluster whose nodes stop one after another waits on the ones already gone).
stop_pidfiles() {
  local spec pids=()
  for spec in "$@"; do
    stop_pidfile "${spec%%:*}" "${spec#*:}" "${STOP_WAIT_S:-60}" &
    pids+=($!)
  done
  local pid rc=0
  for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  return "$rc"
}

# kill_pidfile NAME FILE: SIGKILL (a crash, for chaos tests), wait until it is gone, remove FILE.
kill_pidfile() {
  local name="$1" f="$2"
  if ! pid_alive "$f"; then rm -f "$f"; log "$name: not running"; return 0; fi
  local pid; pid="$(cat "$f")"
  kill -KILL "$pid" 2>/dev/null || true
  wait_gone "$name" "$pid" 10
  rm -f "$f"
  log "$name: killed (pid $pid, SIGKILL)"
}

# apt_install PACKAGE...: Debian's packages (as root, or through sudo). Another apt or dpkg run
# (unattended-upgrades, a second `make install`) holds dpkg's lock: wait for Podium's own lock
# file, then for dpkg's (apt's DPkg::Lock::Timeout), and retry a failed run a few times.
apt_install() {
  local runner=()
  if (( EUID != 0 )); then
    command -v sudo >/dev/null || die "root (or sudo) is needed to apt-get install $*"
    runner=(sudo -n)
  fi
  local attempts="${PODIUM_APT_ATTEMPTS:-5}" backoff="${PODIUM_APT_RETRY_S:-5}" attempt
  local apt=(apt-get -o DPkg::Lock::Timeout="${PODIUM_APT_LOCK_TIMEOUT_S:-300}")
  for ((attempt = 1; attempt <= attempts; attempt++)); do
    if (
      flock -w "${PODIUM_APT_LOCK_TIMEOUT_S:-300}" 9 || exit 1
      "${runner[@]}" env DEBIAN_FRONTEND=noninteractive "${apt[@]}" update -qq >&2 &&
        "${runner[@]}" env DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq \
          --no-install-recommends "$@" >&2
    ) 9>"${TMPDIR:-/tmp}/podium-apt.lock"; then
      return 0
    fi
    (( attempt < attempts )) || break
    log "apt-get install $* failed (attempt $attempt of $attempts; is another package run" \
        "holding the lock?); retrying in $((attempt * backoff))s"
    sleep $((attempt * backoff))
  done
  die "apt-get install $* failed after $attempts attempts"
}

# require_command COMMAND PACKAGE: install PACKAGE from Debian when COMMAND is not on PATH.
require_command() {
  command -v "$1" >/dev/null && return 0
  log "$1 not found: installing Debian's $2"
  apt_install "$2"
  hash -r
  command -v "$1" >/dev/null || die "$1 still not found after installing $2"
}
