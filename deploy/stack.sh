#!/usr/bin/env bash
# The whole Podium stack on this machine, as separate processes managed by PID files.
#   deploy/stack.sh up       start whichever of kafka, redis, ingest, rating, api is not running
#   deploy/stack.sh down     stop exactly the processes this script started (services, then infra)
#   deploy/stack.sh status
#   deploy/stack.sh run      up + the demo vote stream; Ctrl-C stops everything it started
#   deploy/stack.sh rebuild  replay podium.votes into a fresh Redis key space, then switch to it
# Settings (env): PODIUM_INGEST_PORT (8001), PODIUM_API_PORT (8000),
#   PODIUM_RATING_METRICS_PORT (8002: the worker's /healthz, /readyz, /metrics), PODIUM_KAFKA_PORT (9092),
#   PODIUM_REDIS_PORT (6380), PODIUM_RUN_DIR (.run), PODIUM_PYTHON (.venv/bin/python),
#   PODIUM_DEMO_RATE (votes per second of the demo, 200), PODIUM_INGEST_ADMIN_TOKEN (made once
#   into $RUN_DIR/admin-token when unset), PODIUM_DEV_API_KEY (the development client key that
#   ingest registers at start-up; made once into $RUN_DIR/dev-api-key when unset).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

PY="${PODIUM_PYTHON:-$ROOT/.venv/bin/python}"
export PODIUM_KAFKA_BOOTSTRAP="${PODIUM_KAFKA_BOOTSTRAP:-127.0.0.1:${PODIUM_KAFKA_PORT:-9092}}"
export PODIUM_REDIS_URL="${PODIUM_REDIS_URL:-redis://127.0.0.1:${PODIUM_REDIS_PORT:-6380}/0}"
export PODIUM_INGEST_PORT="${PODIUM_INGEST_PORT:-8001}"
export PODIUM_API_PORT="${PODIUM_API_PORT:-8000}"
export PODIUM_RATING_METRICS_PORT="${PODIUM_RATING_METRICS_PORT:-8002}"
SERVICES=(ingest rating api)
# The model-registry admin token of ingest (the demo registers its models with it): the one given,
# or one made once per run dir.
if [[ -z "${PODIUM_INGEST_ADMIN_TOKEN:-}" ]]; then
  mkdir -p "$RUN_DIR"
  [[ -s "$RUN_DIR/admin-token" ]] || (umask 077; od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$RUN_DIR/admin-token")
  PODIUM_INGEST_ADMIN_TOKEN="$(cat "$RUN_DIR/admin-token")"
fi
export PODIUM_INGEST_ADMIN_TOKEN
# The development client key (ingest registers it as client "dev"; the demo sends it).
if [[ -z "${PODIUM_DEV_API_KEY:-}" ]]; then
  mkdir -p "$RUN_DIR"
  [[ -s "$RUN_DIR/dev-api-key" ]] || (umask 077; printf 'pdm_dev_%s' "$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')" >"$RUN_DIR/dev-api-key")
  PODIUM_DEV_API_KEY="$(cat "$RUN_DIR/dev-api-key")"
fi
export PODIUM_DEV_API_KEY

wait_http() {  # wait_http NAME URL PIDFILE
  local deadline=$((SECONDS + 60))
  until curl -fsS -o /dev/null "$2" 2>/dev/null; do
    pid_alive "$3" || { tail -n 30 "$RUN_DIR/$1.log" >&2; die "$1 exited during start-up; see $RUN_DIR/$1.log"; }
    (( SECONDS < deadline )) || die "$1 not answering $2 after 60s; see $RUN_DIR/$1.log"
    sleep 0.2
  done
}

start_service() {
  local name="$1" pidfile="$RUN_DIR/$1.pid"
  if pid_alive "$pidfile"; then log "$name: already running (pid $(cat "$pidfile"))"; return 0; fi
  [[ -x "$PY" ]] || die "no Python environment at $PY: run 'make install' first"
  # setsid: a Ctrl-C in the terminal reaches `make run`, which then stops services in order
  # the new session's shell writes its own PID, then execs the service (same PID)
  rm -f "$pidfile"
  setsid bash -c 'echo $$ >"$1"; cd "$2"; shift 2; exec "$@"' _ "$pidfile" "$ROOT" \
      "$PY" -m "services.$name" >>"$RUN_DIR/$name.log" 2>&1 </dev/null &
  local deadline=$((SECONDS + 10))
  until [[ -s "$pidfile" ]]; do (( SECONDS < deadline )) || die "$name did not start"; sleep 0.05; done
  case "$name" in
    ingest) wait_http ingest "http://127.0.0.1:$PODIUM_INGEST_PORT/healthz" "$pidfile" ;;
    api) wait_http api "http://127.0.0.1:$PODIUM_API_PORT/healthz" "$pidfile" ;;
    rating) wait_http rating "http://127.0.0.1:$PODIUM_RATING_METRICS_PORT/healthz" "$pidfile" ;;
  esac
  log "$name: running (pid $(cat "$pidfile"), log $RUN_DIR/$name.log)"
}

up() {
  "$ROOT/deploy/kafka/kafka.sh" start
  "$ROOT/deploy/redis/redis.sh" start
  for s in "${SERVICES[@]}"; do start_service "$s"; done
  log "ingest: http://127.0.0.1:$PODIUM_INGEST_PORT/docs   api: http://127.0.0.1:$PODIUM_API_PORT/docs"
  log "development client key (send as X-API-Key): $PODIUM_DEV_API_KEY"
  log "admin key (Authorization: Bearer): in $RUN_DIR/admin-token or PODIUM_INGEST_ADMIN_TOKEN"
}

down() {
  stop_pidfile ingest "$RUN_DIR/ingest.pid" 20
  stop_pidfile rating "$RUN_DIR/rating.pid" 40
  stop_pidfile api "$RUN_DIR/api.pid" 20
  "$ROOT/deploy/redis/redis.sh" stop
  "$ROOT/deploy/kafka/kafka.sh" stop
}

status() {
  "$ROOT/deploy/kafka/kafka.sh" status || true
  "$ROOT/deploy/redis/redis.sh" status || true
  for s in "${SERVICES[@]}"; do
    if pid_alive "$RUN_DIR/$s.pid"; then echo "$s running (pid $(cat "$RUN_DIR/$s.pid"))"; else echo "$s stopped"; fi
  done
}

run() {
  local demo=""
  # waits for the demo only: the services are this shell's children too, and a bare "wait"
  # hung on them when only this shell got the signal (SIGTERM from a supervisor, not Ctrl-C)
  trap 'trap "" INT TERM; echo; log "stopping everything make run started"; if [[ -n "$demo" ]]; then kill -TERM "$demo" 2>/dev/null; wait "$demo" 2>/dev/null; fi; down; exit 0' INT TERM
  up
  echo
  echo "  Live leaderboard: http://127.0.0.1:$PODIUM_API_PORT/"
  echo "  API docs:         http://127.0.0.1:$PODIUM_API_PORT/docs  (ingest: http://127.0.0.1:$PODIUM_INGEST_PORT/docs)"
  echo "  Streaming demo votes at ${PODIUM_DEMO_RATE:-200}/s; press Ctrl-C to stop everything."
  echo
  "$PY" -m services.demo --ingest "http://127.0.0.1:$PODIUM_INGEST_PORT" --rate "${PODIUM_DEMO_RATE:-200}" &
  demo=$!
  wait "$demo" || true
  down
}

rebuild() {
  [[ -x "$PY" ]] || die "no Python environment at $PY: run 'make install' first"
  (cd "$ROOT" && "$PY" -m services.rating.rebuild)
}

case "${1:-}" in
  up) up ;;
  rebuild) rebuild ;;
  down) down ;;
  status) status ;;
  run) run ;;
  *) echo "usage: $0 up|down|status|run|rebuild" >&2; exit 2 ;;
esac
