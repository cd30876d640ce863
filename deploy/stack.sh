#!/usr/bin/env bash
# The whole Podium stack on this machine, as separate processes managed by PID files.
#   deploy/stack.sh up [--cluster|--cluster-infra]
#                            start whichever part of the topology is not running (see below)
#   deploy/stack.sh down     stop exactly the processes this script started (services, then
#                            infra), whichever topology is up in the run dir
#   deploy/stack.sh status
#   deploy/stack.sh run      up (single node) + the demo vote stream; Ctrl-C stops everything
#   deploy/stack.sh rebuild  replay podium.votes into a fresh Redis key space, then switch to it
# Topologies (--cluster / --cluster-infra, or PODIUM_TOPOLOGY=single|cluster|cluster-infra):
#   single        one Kafka broker, one Redis, one ingest, one rating worker, one api (default)
#   cluster       3 KRaft brokers (deploy/kafka/kafka.sh, PODIUM_KAFKA_NODES=3: 9092/9094/9096),
#                 a Redis Cluster of 3 masters + 3 replicas (deploy/redis/redis-cluster.sh:
#                 6381-6386), 2 ingest (8001, 8011), 2 rating workers (metrics 8002, 8012),
#                 2 api (8000, 8010); the services get PODIUM_REDIS_URL=redis+cluster://<seeds>/0
#   cluster-infra the cluster's brokers and Redis Cluster only
# Settings (env): PODIUM_INGEST_PORT (8001), PODIUM_API_PORT (8000),
#   PODIUM_RATING_METRICS_PORT (8002: the worker's /healthz, /readyz, /metrics), PODIUM_KAFKA_PORT (9092),
#   PODIUM_REDIS_PORT (6380), PODIUM_RUN_DIR (.run), PODIUM_PYTHON (.venv/bin/python),
#   PODIUM_DEMO_RATE (votes per second of the demo, 200), PODIUM_DEMO_SAMPLED (1: the demo asks the
#   api's next-battle for every battle and sends the sampling tokens back; PODIUM_SAMPLING_SECRET is
#   then made once into $RUN_DIR/sampling-secret when unset), PODIUM_INGEST_ADMIN_TOKEN (made once
#   into $RUN_DIR/admin-token when unset), PODIUM_DEV_API_KEY (the development client key that
#   ingest registers at start-up; made once into $RUN_DIR/dev-api-key when unset).
#   Cluster: PODIUM_INGEST_PORTS (8001,8011), PODIUM_API_PORTS (8000,8010),
#   PODIUM_RATING_METRICS_PORTS (8002,8012): one port per process, as many processes as ports;
#   the brokers' and Redis nodes' ports as in deploy/kafka/kafka.sh and redis-cluster.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

PY="${PODIUM_PYTHON:-$ROOT/.venv/bin/python}"
TOPOLOGY_FILE="$RUN_DIR/topology"
TOPOLOGY="${PODIUM_TOPOLOGY:-single}"
if [[ "${1:-}" == up || "${1:-}" == run ]]; then
  case "${2:-}" in
    --cluster) TOPOLOGY=cluster ;;
    --cluster-infra) TOPOLOGY=cluster-infra ;;
    --single) TOPOLOGY=single ;;
    "") ;;
    *) die "unknown option ${2}: use --cluster or --cluster-infra" ;;
  esac
elif [[ -s "$TOPOLOGY_FILE" ]]; then
  TOPOLOGY="$(cat "$TOPOLOGY_FILE")"  # down, status, rebuild: the topology that is up
fi
case "$TOPOLOGY" in
  single|cluster|cluster-infra) ;;
  *) die "PODIUM_TOPOLOGY must be single, cluster or cluster-infra, not '$TOPOLOGY'" ;;
esac
KAFKA="$ROOT/deploy/kafka/kafka.sh"
REDIS="$ROOT/deploy/redis/redis.sh"
REDIS_CLUSTER="$ROOT/deploy/redis/redis-cluster.sh"
if [[ "$TOPOLOGY" == single ]]; then
  export PODIUM_KAFKA_BOOTSTRAP="${PODIUM_KAFKA_BOOTSTRAP:-127.0.0.1:${PODIUM_KAFKA_PORT:-9092}}"
  export PODIUM_REDIS_URL="${PODIUM_REDIS_URL:-redis://127.0.0.1:${PODIUM_REDIS_PORT:-6380}/0}"
else
  export PODIUM_KAFKA_NODES=3
  PODIUM_KAFKA_BOOTSTRAP="$("$KAFKA" bootstrap)"
  # The contract for the services' Redis client: every node of the cluster as a seed, db 0
  # (the only one a Redis Cluster has); see docs/operations.md.
  PODIUM_REDIS_URL="redis+cluster://$("$REDIS_CLUSTER" seeds)/0"
  export PODIUM_KAFKA_BOOTSTRAP PODIUM_REDIS_URL
fi
export PODIUM_INGEST_PORT="${PODIUM_INGEST_PORT:-8001}"
export PODIUM_API_PORT="${PODIUM_API_PORT:-8000}"
export PODIUM_RATING_METRICS_PORT="${PODIUM_RATING_METRICS_PORT:-8002}"
SERVICES=(ingest rating api)
# The port setting of each service (rating: its health and metrics endpoint), and the ports of
# its processes in the cluster: one process per port.
declare -A PORT_SETTING=([ingest]=PODIUM_INGEST_PORT [rating]=PODIUM_RATING_METRICS_PORT [api]=PODIUM_API_PORT)
declare -A CLUSTER_PORTS=(
  [ingest]="${PODIUM_INGEST_PORTS:-$PODIUM_INGEST_PORT,$((PODIUM_INGEST_PORT + 10))}"
  [rating]="${PODIUM_RATING_METRICS_PORTS:-$PODIUM_RATING_METRICS_PORT,$((PODIUM_RATING_METRICS_PORT + 10))}"
  [api]="${PODIUM_API_PORTS:-$PODIUM_API_PORT,$((PODIUM_API_PORT + 10))}"
)
# The model-registry admin token of ingest (the demo registers its models with it): the one given,
# or one made once per run dir.
if [[ -z "${PODIUM_INGEST_ADMIN_TOKEN:-}" ]]; then
  mkdir -p "$RUN_DIR"
  [[ -s "$RUN_DIR/admin-token" ]] || (umask 077; od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$RUN_DIR/admin-token")
  PODIUM_INGEST_ADMIN_TOKEN="$(cat "$RUN_DIR/admin-token")"
fi
export PODIUM_INGEST_ADMIN_TOKEN
# The sampling tokens' secret (api signs, ingest verifies), made once per run dir for a sampled demo.
if [[ -n "${PODIUM_DEMO_SAMPLED:-}" && -z "${PODIUM_SAMPLING_SECRET:-}" ]]; then
  mkdir -p "$RUN_DIR"
  [[ -s "$RUN_DIR/sampling-secret" ]] || (umask 077; od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$RUN_DIR/sampling-secret")
  PODIUM_SAMPLING_SECRET="$(cat "$RUN_DIR/sampling-secret")"
  export PODIUM_SAMPLING_SECRET
fi
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

# start_service NAME [INSTANCE PORT]: one process of a service; INSTANCE names its files
# (NAME-INSTANCE.pid/.log) and PORT its HTTP port, in the cluster topology.
start_service() {
  local name="$1" label="${2:+$1-$2}" port="${3:-}"
  label="${label:-$1}"
  local pidfile="$RUN_DIR/$label.pid"
  if pid_alive "$pidfile"; then log "$label: already running (pid $(cat "$pidfile"))"; return 0; fi
  [[ -x "$PY" ]] || die "no Python environment at $PY: run 'make install' first"
  port="${port:-${!PORT_SETTING[$name]}}"
  # setsid: a Ctrl-C in the terminal reaches `make run`, which then stops services in order
  # the new session's shell writes its own PID, then execs the service (same PID)
  rm -f "$pidfile"
  env "${PORT_SETTING[$name]}=$port" \
    setsid bash -c 'echo $$ >"$1"; cd "$2"; shift 2; exec "$@"' _ "$pidfile" "$ROOT" \
      "$PY" -m "services.$name" >>"$RUN_DIR/$label.log" 2>&1 </dev/null &
  local deadline=$((SECONDS + 10))
  until [[ -s "$pidfile" ]]; do (( SECONDS < deadline )) || die "$label did not start"; sleep 0.05; done
  wait_http "$label" "http://127.0.0.1:$port/healthz" "$pidfile"
  log "$label: running (pid $(cat "$pidfile"), port $port, log $RUN_DIR/$label.log)"
}

check_topology() {  # one topology at a time per run dir: down first to switch
  local running=""
  [[ -s "$TOPOLOGY_FILE" ]] && running="$(cat "$TOPOLOGY_FILE")"
  # cluster and cluster-infra share their infrastructure: one may follow the other
  if [[ -n "$running" && "${running%-infra}" != "${TOPOLOGY%-infra}" ]] && any_running; then
    die "the $running topology is up in $RUN_DIR; 'make down' first, then start $TOPOLOGY"
  fi
  echo "$TOPOLOGY" >"$TOPOLOGY_FILE"
}

any_running() {
  local f
  for f in "$RUN_DIR"/*.pid; do pid_alive "$f" && return 0; done
  return 1
}

up_single() {
  "$KAFKA" start
  "$REDIS" start
  for s in "${SERVICES[@]}"; do start_service "$s"; done
  log "ingest: http://127.0.0.1:$PODIUM_INGEST_PORT/docs   api: http://127.0.0.1:$PODIUM_API_PORT/docs"
}

up_cluster() {
  "$KAFKA" start
  "$REDIS_CLUSTER" start
  log "kafka bootstrap: $PODIUM_KAFKA_BOOTSTRAP"
  log "redis: $PODIUM_REDIS_URL"
  [[ "$TOPOLOGY" == cluster ]] || return 0
  local s ports i
  for s in "${SERVICES[@]}"; do
    IFS=, read -ra ports <<<"${CLUSTER_PORTS[$s]}"
    for i in "${!ports[@]}"; do start_service "$s" "$((i + 1))" "${ports[$i]}"; done
  done
  log "ingest: ${CLUSTER_PORTS[ingest]}   api: ${CLUSTER_PORTS[api]}   rating metrics: ${CLUSTER_PORTS[rating]} (127.0.0.1)"
}

up() {
  check_topology
  if [[ "$TOPOLOGY" == single ]]; then up_single; else up_cluster; fi
  [[ "$TOPOLOGY" == cluster-infra ]] && return 0
  log "development client key (send as X-API-Key): $PODIUM_DEV_API_KEY"
  log "admin key (Authorization: Bearer): in $RUN_DIR/admin-token or PODIUM_INGEST_ADMIN_TOKEN"
}

service_pidfiles() {  # NAME:FILE for each process of service $1 with a PID file, any topology
  local f
  for f in "$RUN_DIR/$1.pid" "$RUN_DIR/$1"-[0-9]*.pid; do
    [[ -e "$f" ]] && echo "$(basename "$f" .pid):$f"
  done
  return 0
}

stop_service() {  # stop_service NAME SECONDS: every process of it, at once
  local specs=()
  mapfile -t specs < <(service_pidfiles "$1")
  (( ${#specs[@]} )) || return 0
  STOP_WAIT_S="$2" stop_pidfiles "${specs[@]}"
}

down() {
  stop_service ingest 20
  stop_service rating 40
  stop_service api 20
  if compgen -G "$RUN_DIR/redis-cluster-*.pid" >/dev/null; then "$REDIS_CLUSTER" stop; fi
  "$REDIS" stop
  "$KAFKA" stop
  rm -f "$TOPOLOGY_FILE"
}

status() {
  echo "topology: $TOPOLOGY"
  "$KAFKA" status || true
  if [[ "$TOPOLOGY" == single ]]; then "$REDIS" status || true; else "$REDIS_CLUSTER" status || true; fi
  [[ "$TOPOLOGY" == cluster-infra ]] && return 0
  local s label ports i
  for s in "${SERVICES[@]}"; do
    local labels=("$s")
    if [[ "$TOPOLOGY" == cluster ]]; then
      IFS=, read -ra ports <<<"${CLUSTER_PORTS[$s]}"
      labels=(); for i in "${!ports[@]}"; do labels+=("$s-$((i + 1))"); done
    fi
    for label in "${labels[@]}"; do
      if pid_alive "$RUN_DIR/$label.pid"; then echo "$label running (pid $(cat "$RUN_DIR/$label.pid"))"; else echo "$label stopped"; fi
    done
  done
}

run() {
  [[ "$TOPOLOGY" == single ]] || die "make run is the single-node demo; the cluster starts with 'make up TOPOLOGY=$TOPOLOGY'"
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
  "$PY" -m services.demo --ingest "http://127.0.0.1:$PODIUM_INGEST_PORT" --rate "${PODIUM_DEMO_RATE:-200}" \
    ${PODIUM_DEMO_SAMPLED:+--api "http://127.0.0.1:$PODIUM_API_PORT"} &
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
  *) echo "usage: $0 up [--cluster|--cluster-infra]|down|status|run|rebuild" >&2; exit 2 ;;
esac
