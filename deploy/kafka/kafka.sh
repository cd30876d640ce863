#!/usr/bin/env bash
# Apache Kafka 4.x (KRaft) from the broker jars on Maven Central: one node, or a cluster of
# several combined broker+controller nodes (PODIUM_KAFKA_NODES=3) on this machine.
#   deploy/kafka/kafka.sh fetch         install Java/Maven if missing; resolve the jars once
#   deploy/kafka/kafka.sh start         format storage (first time only), start every node, wait
#                                       until each answers a metadata request listing them all
#   deploy/kafka/kafka.sh stop          stop every node this script started in the run dir (PID)
#   deploy/kafka/kafka.sh status
#   deploy/kafka/kafka.sh bootstrap     print the bootstrap servers (host:port,...)
#   deploy/kafka/kafka.sh start-node N  start node N alone and wait until it answers
#   deploy/kafka/kafka.sh stop-node N   SIGTERM node N (controlled shutdown), wait
#   deploy/kafka/kafka.sh kill-node N   SIGKILL node N (a crash; its data stays)
# Settings (env): PODIUM_KAFKA_NODES (1), PODIUM_KAFKA_PORT (9092), PODIUM_KAFKA_CONTROLLER_PORT
#   (9093), PODIUM_KAFKA_PORTS / PODIUM_KAFKA_CONTROLLER_PORTS (comma lists, one per node; by
#   default node N listens on PODIUM_KAFKA_PORT + 2(N-1), its controller on
#   PODIUM_KAFKA_CONTROLLER_PORT + 2(N-1)), PODIUM_RUN_DIR (.run: pid, log, data),
#   PODIUM_CACHE_DIR (.cache), PODIUM_KAFKA_HEAP (512m; 384m per node in a cluster),
#   PODIUM_KAFKA_START_TIMEOUT (120 seconds), PODIUM_KAFKA_BROKER_SESSION_TIMEOUT_MS (9000: how
#   long the controller waits before it fences a silent broker and moves its leaderships).
# One node keeps the file names it always had (kafka.pid, kafka-data, ...); node N of a
# cluster uses kafka-N.pid, kafka-N-data, kafka-N.log, kafka-N-server.properties.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

HERE="$ROOT/deploy/kafka"
LIBS="$CACHE_DIR/kafka/libs"
NODES="${PODIUM_KAFKA_NODES:-1}"
[[ "$NODES" =~ ^[1-9]$ ]] || die "PODIUM_KAFKA_NODES must be 1..9, not '$NODES'"
BASE_PORT="${PODIUM_KAFKA_PORT:-9092}"
BASE_CPORT="${PODIUM_KAFKA_CONTROLLER_PORT:-9093}"
if (( NODES == 1 )); then HEAP="${PODIUM_KAFKA_HEAP:-512m}"; else HEAP="${PODIUM_KAFKA_HEAP:-384m}"; fi
TIMEOUT="${PODIUM_KAFKA_START_TIMEOUT:-120}"
SESSION_MS="${PODIUM_KAFKA_BROKER_SESSION_TIMEOUT_MS:-9000}"
CLUSTER_ID_FILE="$RUN_DIR/kafka-cluster-id"
PYTHON_BOOT="${PODIUM_PYTHON_BOOT:-python3}"

# port_list SETTING BASE: the comma list SETTING holds, or BASE + 2(N-1) for nodes 1..NODES
port_list() {
  local given="$1" base="$2" list=() n
  if [[ -n "$given" ]]; then
    IFS=, read -ra list <<<"$given"
    (( ${#list[@]} == NODES )) || die "$given: expected $NODES ports (PODIUM_KAFKA_NODES)"
  else
    for ((n = 0; n < NODES; n++)); do list+=($((base + 2 * n))); done
  fi
  echo "${list[@]}"
}
read -ra PORTS <<<"$(port_list "${PODIUM_KAFKA_PORTS:-}" "$BASE_PORT")"
read -ra CPORTS <<<"$(port_list "${PODIUM_KAFKA_CONTROLLER_PORTS:-}" "$BASE_CPORT")"

node_name() { if (( NODES == 1 )); then echo kafka; else echo "kafka-$1"; fi; }
node_port() { echo "${PORTS[$(($1 - 1))]}"; }
node_cport() { echo "${CPORTS[$(($1 - 1))]}"; }
node_pidfile() { echo "$RUN_DIR/$(node_name "$1").pid"; }
node_log() { echo "$RUN_DIR/$(node_name "$1").log"; }
node_data() { echo "$RUN_DIR/$(node_name "$1")-data"; }
node_props() { echo "$RUN_DIR/$(node_name "$1")-server.properties"; }
check_node() { [[ "${1:-}" =~ ^[0-9]+$ ]] && (( $1 >= 1 && $1 <= NODES )) || die "node must be 1..$NODES"; }
all_ids() { seq -s, 1 "$NODES"; }

bootstrap() {
  local n out=()
  for ((n = 1; n <= NODES; n++)); do out+=("127.0.0.1:$(node_port "$n")"); done
  (IFS=,; echo "${out[*]}")
}

fetch() {
  require_command java openjdk-17-jre-headless  # Kafka 4.x needs Java 17+
  if [[ -f "$LIBS/.complete" ]]; then return 0; fi
  require_command mvn maven  # needed once, to fetch the Kafka jars
  log "kafka: resolving broker jars from Maven Central into $LIBS (first run only)"
  local t0=$SECONDS
  rm -rf "$LIBS"; mkdir -p "$LIBS"
  mvn -q -B -f "$HERE/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$LIBS" >&2 \
    || die "mvn could not resolve the Kafka jars (see output above)"
  touch "$LIBS/.complete"
  log "kafka: $(ls "$LIBS" | wc -l) jars fetched in $((SECONDS - t0))s"
}

java_cmd() {
  java -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
       -Dlog4j2.configurationFile="$HERE/log4j2.properties" -cp "$LIBS/*" "$@"
}

# replicated: what a topic, the offsets and the transaction log get with this many nodes
# (RF up to 3, min ISR RF-1: acks=all still succeeds with one node down).
replication() { echo $(( NODES < 3 ? NODES : 3 )); }
min_isr() { local rf; rf=$(replication); echo $(( rf > 1 ? rf - 1 : 1 )); }

write_config() {  # write_config N
  local n="$1" port cport quorum rf isr voters=() i
  port=$(node_port "$n"); cport=$(node_cport "$n"); rf=$(replication); isr=$(min_isr)
  if (( NODES == 1 )); then
    quorum="controller.quorum.bootstrap.servers=127.0.0.1:$cport"
  else
    for ((i = 1; i <= NODES; i++)); do voters+=("$i@127.0.0.1:$(node_cport "$i")"); done
    quorum="controller.quorum.voters=$(IFS=,; echo "${voters[*]}")"
  fi
  cat > "$(node_props "$n")" <<PROPS
process.roles=broker,controller
node.id=$n
$quorum
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$(node_data "$n")
num.partitions=1
auto.create.topics.enable=true
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
log.retention.hours=-1
unclean.leader.election.enable=false
broker.session.timeout.ms=$SESSION_MS
broker.heartbeat.interval.ms=$(( SESSION_MS / 4 < 2000 ? SESSION_MS / 4 : 2000 ))
PROPS
}

cluster_id() {  # one id for every node of this run dir, made at the first format
  if [[ ! -s "$CLUSTER_ID_FILE" ]]; then
    java_cmd kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1 >"$CLUSTER_ID_FILE.tmp"
    [[ -s "$CLUSTER_ID_FILE.tmp" ]] || die "kafka: StorageTool random-uuid gave no id"
    mv "$CLUSTER_ID_FILE.tmp" "$CLUSTER_ID_FILE"
  fi
  cat "$CLUSTER_ID_FILE"
}

format_node() {  # format_node N CLUSTER_ID: once per data dir (a second format would refuse)
  local n="$1" id="$2" data; data=$(node_data "$n")
  [[ -f "$data/meta.properties" ]] && return 0
  mkdir -p "$data"
  log "kafka: formatting KRaft storage of node $n in $data (cluster $id)"
  local mode=(); (( NODES == 1 )) && mode=(--standalone)  # several nodes: static voters
  java_cmd kafka.tools.StorageTool format "${mode[@]}" -t "$id" -c "$(node_props "$n")" \
    >>"$(node_log "$n")" 2>&1 || die "storage format of node $n failed; see $(node_log "$n")"
}

launch_node() {  # launch_node N: start the JVM of node N (formatted, configured), no waiting
  local n="$1" pidfile port
  pidfile=$(node_pidfile "$n"); port=$(node_port "$n")
  log "kafka: starting node $n on 127.0.0.1:$port (log $(node_log "$n"))"
  # setsid: own session, so a Ctrl-C in the terminal does not reach the broker; the shell
  # writes its PID and execs java (same PID)
  rm -f "$pidfile"
  setsid bash -c "echo \$\$ >'$pidfile'; exec java -Xms$HEAP -Xmx$HEAP -XX:+UseG1GC \
      -Djava.awt.headless=true -Dlog4j2.configurationFile='$HERE/log4j2.properties' \
      -cp '$LIBS/*' kafka.Kafka '$(node_props "$n")'" >>"$(node_log "$n")" 2>&1 </dev/null &
  local wait_pid=$((SECONDS + 10))
  until [[ -s "$pidfile" ]]; do (( SECONDS < wait_pid )) || die "kafka node $n did not start"; sleep 0.05; done
}

# wait_node N NODE_IDS: until node N answers a metadata request listing NODE_IDS (e.g. 1,2,3)
wait_node() {
  local n="$1" ids="$2" pidfile port deadline=$((SECONDS + TIMEOUT))
  pidfile=$(node_pidfile "$n"); port=$(node_port "$n")
  until port_open "$port" && \
        "$PYTHON_BOOT" "$HERE/metadata_probe.py" "127.0.0.1:$port" --nodes "$ids" >/dev/null 2>&1; do
    pid_alive "$pidfile" || { tail -n 30 "$(node_log "$n")" >&2; die "kafka node $n exited during start-up; see $(node_log "$n")"; }
    (( SECONDS < deadline )) || die "kafka node $n not ready after ${TIMEOUT}s (brokers $ids); see $(node_log "$n")"
    sleep 0.3
  done
  log "kafka: node $n ready on 127.0.0.1:$port (pid $(cat "$pidfile"))"
}

prepare() {  # prepare N...: refuse a taken port, write the config, format the data dir once
  local n id="" formats=() pid
  for n in "$@"; do
    port_open "$(node_port "$n")" && die "port $(node_port "$n") is taken by another process; set PODIUM_KAFKA_PORT(S)"
    port_open "$(node_cport "$n")" && die "port $(node_cport "$n") is taken by another process; set PODIUM_KAFKA_CONTROLLER_PORT(S)"
    write_config "$n"
    if [[ ! -f "$(node_data "$n")/meta.properties" ]]; then
      [[ -n "$id" ]] || id=$(cluster_id)
      format_node "$n" "$id" &  # one JVM each, side by side
      formats+=($!)
    fi
  done
  for pid in "${formats[@]}"; do wait "$pid" || die "kafka: storage format failed (see above)"; done
}

start() {
  local n todo=()
  for ((n = 1; n <= NODES; n++)); do
    if pid_alive "$(node_pidfile "$n")"; then
      log "kafka: node $n already running (pid $(cat "$(node_pidfile "$n")")) on 127.0.0.1:$(node_port "$n")"
    else
      todo+=("$n")
    fi
  done
  (( ${#todo[@]} )) || return 0
  fetch
  prepare "${todo[@]}"
  for n in "${todo[@]}"; do launch_node "$n"; done  # all at once: a quorum needs a majority
  for ((n = 1; n <= NODES; n++)); do wait_node "$n" "$(all_ids)"; done
  (( NODES == 1 )) || log "kafka: $NODES brokers ready, bootstrap $(bootstrap)"
}

start_node() {
  check_node "$1"
  if pid_alive "$(node_pidfile "$1")"; then log "kafka: node $1 already running"; return 0; fi
  fetch
  prepare "$1"
  launch_node "$1"
  wait_node "$1" "$1"
}

stop_all() {  # every node of this run dir, one node or a cluster, all at once
  local f specs=()
  for f in "$RUN_DIR"/kafka.pid "$RUN_DIR"/kafka-[0-9]*.pid; do
    [[ -e "$f" ]] && specs+=("$(basename "$f" .pid):$f")
  done
  (( ${#specs[@]} )) || { log "kafka: not running"; return 0; }
  # A whole cluster stopping at once: the last broker's controlled shutdown waits for a quorum
  # that has already gone (minutes); its data is on disk either way, so it gets 20 s, not 60.
  local wait_s=60; (( ${#specs[@]} == 1 )) || wait_s=20
  STOP_WAIT_S=$wait_s stop_pidfiles "${specs[@]}"
}

status() {
  local n down=0
  for ((n = 1; n <= NODES; n++)); do
    local label="kafka"; (( NODES == 1 )) || label="kafka node $n"
    if pid_alive "$(node_pidfile "$n")"; then
      echo "$label running (pid $(cat "$(node_pidfile "$n")"), port $(node_port "$n"))"
    else
      echo "$label stopped"; down=1
    fi
  done
  return $(( down ? 3 : 0 ))
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop_all ;;
  status) status ;;
  bootstrap) bootstrap ;;
  start-node) start_node "${2:-}" ;;
  stop-node) check_node "${2:-}"; stop_pidfile "$(node_name "$2")" "$(node_pidfile "$2")" 60 ;;
  kill-node) check_node "${2:-}"; kill_pidfile "$(node_name "$2")" "$(node_pidfile "$2")" ;;
  *) echo "usage: $0 fetch|start|stop|status|bootstrap|start-node N|stop-node N|kill-node N" >&2; exit 2 ;;
esac
