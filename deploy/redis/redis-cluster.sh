#!/usr/bin/env bash
# A Redis Cluster for Podium: six of Debian's redis-server in cluster mode (3 masters, each with
# a replica), each on its own port and data dir with AOF on, managed by PID.
#   deploy/redis/redis-cluster.sh start         start every node (installing redis first if
#                                               needed), create the cluster the first time, wait
#                                               for cluster_state:ok on every node
#   deploy/redis/redis-cluster.sh stop          stop every node this script started (SIGTERM)
#   deploy/redis/redis-cluster.sh status        each node: pid, port, master or replica
#   deploy/redis/redis-cluster.sh seeds         print the nodes as host:port,host:port,...
#   deploy/redis/redis-cluster.sh masters       print the numbers of the nodes now masters
#   deploy/redis/redis-cluster.sh start-node N  start node N alone (a failed-over master
#                                               rejoins as a replica); wait until it is in sync
#   deploy/redis/redis-cluster.sh stop-node N   SIGTERM node N (it saves its AOF), wait
#   deploy/redis/redis-cluster.sh kill-node N   SIGKILL node N (a crash: its replica takes over
#                                               after the node timeout)
# Settings (env): PODIUM_REDIS_CLUSTER_PORTS (6381,...,6386: six ports, the first three start
#   as masters), PODIUM_REDIS_CLUSTER_BUS_PORTS (each port + 10000), PODIUM_REDIS_CLUSTER_NODE_TIMEOUT_MS
#   (3000: how long a silent master has before its replica is promoted), PODIUM_RUN_DIR (.run),
#   PODIUM_REDIS_MAXMEMORY (unset), PODIUM_REDIS_CLUSTER_START_TIMEOUT (60 seconds).
# Files: $PODIUM_RUN_DIR/redis-cluster-N/ (nodes.conf, AOF), redis-cluster-N.pid, redis-cluster-N.log.
# The cluster is created once; later starts reuse nodes.conf. To begin afresh: stop, then
# remove the redis-cluster-* files of the run dir.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

IFS=, read -ra PORTS <<<"${PODIUM_REDIS_CLUSTER_PORTS:-6381,6382,6383,6384,6385,6386}"
(( ${#PORTS[@]} == 6 )) || die "PODIUM_REDIS_CLUSTER_PORTS needs six ports (3 masters + 3 replicas)"
if [[ -n "${PODIUM_REDIS_CLUSTER_BUS_PORTS:-}" ]]; then
  IFS=, read -ra BUS_PORTS <<<"$PODIUM_REDIS_CLUSTER_BUS_PORTS"
  (( ${#BUS_PORTS[@]} == 6 )) || die "PODIUM_REDIS_CLUSTER_BUS_PORTS needs six ports"
else
  BUS_PORTS=(); for p in "${PORTS[@]}"; do BUS_PORTS+=($((p + 10000))); done
fi
NODE_TIMEOUT_MS="${PODIUM_REDIS_CLUSTER_NODE_TIMEOUT_MS:-3000}"
TIMEOUT="${PODIUM_REDIS_CLUSTER_START_TIMEOUT:-60}"
COUNT=${#PORTS[@]}

node_port() { echo "${PORTS[$(($1 - 1))]}"; }
node_dir() { echo "$RUN_DIR/redis-cluster-$1"; }
node_pidfile() { echo "$RUN_DIR/redis-cluster-$1.pid"; }
node_log() { echo "$RUN_DIR/redis-cluster-$1.log"; }
check_node() { [[ "${1:-}" =~ ^[1-6]$ ]] || die "node must be 1..6"; }
cli() { local n="$1"; shift; redis-cli -h 127.0.0.1 -p "$(node_port "$n")" "$@" 2>/dev/null; }
field() { tr -d '\r' | sed -n "s/^$1://p"; }  # field NAME < INFO-style text

seeds() {
  local n out=()
  for ((n = 1; n <= COUNT; n++)); do out+=("127.0.0.1:$(node_port "$n")"); done
  (IFS=,; echo "${out[*]}")
}

launch_node() {  # launch_node N: a daemonized redis-server in cluster mode; waits for PING
  local n="$1" port dir
  port=$(node_port "$n"); dir=$(node_dir "$n")
  port_open "$port" && die "port $port is taken by another process; set PODIUM_REDIS_CLUSTER_PORTS"
  mkdir -p "$dir"
  # cluster-require-full-coverage no: while a dead master's slots wait for their replica, the
  # other masters go on serving theirs (docs/decisions.md)
  redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --daemonize yes \
    --pidfile "$(node_pidfile "$n")" --logfile "$(node_log "$n")" \
    --appendonly yes --appendfsync everysec --save "" \
    --cluster-enabled yes --cluster-config-file "$dir/nodes.conf" \
    --cluster-port "${BUS_PORTS[$((n - 1))]}" --cluster-node-timeout "$NODE_TIMEOUT_MS" \
    --cluster-require-full-coverage no \
    ${PODIUM_REDIS_MAXMEMORY:+--maxmemory "$PODIUM_REDIS_MAXMEMORY"} >/dev/null
  local deadline=$((SECONDS + 30))
  until [[ "$(cli "$n" ping)" == "PONG" ]]; do
    (( SECONDS < deadline )) || die "redis cluster node $n not answering PING after 30s; see $(node_log "$n")"
    sleep 0.1
  done
}

# node_ready N: the node sees cluster_state:ok, knows all six nodes, and a replica is in sync
node_ready() {
  local n="$1" info repl
  info=$(cli "$n" cluster info) || return 1
  [[ "$(field cluster_state <<<"$info")" == ok ]] || return 1
  [[ "$(field cluster_known_nodes <<<"$info")" == "$COUNT" ]] || return 1
  repl=$(cli "$n" info replication) || return 1
  case "$(field role <<<"$repl")" in
    master) return 0 ;;
    slave) [[ "$(field master_link_status <<<"$repl")" == up ]] ;;
    *) return 1 ;;
  esac
}

wait_ready() {  # wait_ready N...
  local n deadline=$((SECONDS + TIMEOUT))
  for n in "$@"; do
    until node_ready "$n"; do
      pid_alive "$(node_pidfile "$n")" || die "redis cluster node $n exited; see $(node_log "$n")"
      (( SECONDS < deadline )) || die "redis cluster node $n not ready (cluster_state:ok, in sync) after ${TIMEOUT}s; see $(node_log "$n")"
      sleep 0.1
    done
  done
}

create_if_new() {  # the first start: every node knows only itself -> redis-cli --cluster create
  local n known fresh=0 addrs=()
  for ((n = 1; n <= COUNT; n++)); do
    known=$(cli "$n" cluster info | field cluster_known_nodes)
    [[ "$known" == 1 ]] && fresh=$((fresh + 1))
    addrs+=("127.0.0.1:$(node_port "$n")")
  done
  (( fresh == 0 )) && return 0
  (( fresh == COUNT )) || die "redis cluster: $fresh of $COUNT nodes have no cluster config (a data dir lost?); stop, remove $RUN_DIR/redis-cluster-* and start again"
  log "redis cluster: creating 3 masters + 3 replicas on ${addrs[*]}"
  local out="$RUN_DIR/redis-cluster-create.log"
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$out" 2>&1 \
    || { cat "$out" >&2; die "redis-cli --cluster create failed (output above, in $out)"; }
}

start() {
  "$(dirname "${BASH_SOURCE[0]}")/redis.sh" install
  local n
  for ((n = 1; n <= COUNT; n++)); do
    if pid_alive "$(node_pidfile "$n")"; then
      log "redis cluster: node $n already running (pid $(cat "$(node_pidfile "$n")"))"
    else
      launch_node "$n"
    fi
  done
  create_if_new
  wait_ready $(seq 1 "$COUNT")
  log "redis cluster: ready, cluster_state:ok on all $COUNT nodes, seeds $(seeds) (node timeout ${NODE_TIMEOUT_MS} ms, AOF in $RUN_DIR/redis-cluster-N)"
}

start_node() {
  check_node "$1"
  if pid_alive "$(node_pidfile "$1")"; then log "redis cluster: node $1 already running"; return 0; fi
  launch_node "$1"
  wait_ready "$1"
  log "redis cluster: node $1 back on 127.0.0.1:$(node_port "$1") as $(cli "$1" info replication | field role | sed s/slave/replica/)"
}

stop_all() {
  local n specs=()
  for ((n = 1; n <= COUNT; n++)); do
    [[ -e "$(node_pidfile "$n")" ]] && specs+=("redis-cluster-$n:$(node_pidfile "$n")")
  done
  (( ${#specs[@]} )) || { log "redis cluster: not running"; return 0; }
  STOP_WAIT_S=30 stop_pidfiles "${specs[@]}"
}

masters() {
  local n out=()
  for ((n = 1; n <= COUNT; n++)); do
    pid_alive "$(node_pidfile "$n")" || continue
    [[ "$(cli "$n" info replication | field role)" == master ]] && out+=("$n")
  done
  echo "${out[*]}"
}

status() {
  local n down=0 role
  for ((n = 1; n <= COUNT; n++)); do
    if pid_alive "$(node_pidfile "$n")"; then
      role=$(cli "$n" info replication | field role); [[ "$role" == slave ]] && role=replica
      echo "redis cluster node $n running (pid $(cat "$(node_pidfile "$n")"), port $(node_port "$n"), ${role:-unknown})"
    else
      echo "redis cluster node $n stopped"; down=1
    fi
  done
  return $(( down ? 3 : 0 ))
}

case "${1:-}" in
  start) start ;;
  stop) stop_all ;;
  status) status ;;
  seeds) seeds ;;
  masters) masters ;;
  start-node) start_node "${2:-}" ;;
  stop-node) check_node "${2:-}"; stop_pidfile "redis-cluster-$2" "$(node_pidfile "$2")" 30 ;;
  kill-node) check_node "${2:-}"; kill_pidfile "redis-cluster-$2" "$(node_pidfile "$2")" ;;
  *) echo "usage: $0 start|stop|status|seeds|masters|start-node N|stop-node N|kill-node N" >&2; exit 2 ;;
esac
