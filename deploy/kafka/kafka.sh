#!/usr/bin/env bash
# Apache Kafka 4.x (KRaft, single node) from the broker jars on Maven Central.
#   deploy/kafka/kafka.sh fetch    resolve the jars once into $PODIUM_CACHE_DIR/kafka/libs
#   deploy/kafka/kafka.sh start    format storage (first time only), start, wait until ready
#   deploy/kafka/kafka.sh stop     stop the broker this script started (by PID)
#   deploy/kafka/kafka.sh status
# Settings (env): PODIUM_KAFKA_PORT (9092), PODIUM_KAFKA_CONTROLLER_PORT (9093),
#   PODIUM_RUN_DIR (.run: pid, log, data), PODIUM_CACHE_DIR (.cache), PODIUM_KAFKA_HEAP (512m),
#   PODIUM_KAFKA_START_TIMEOUT (120 seconds).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

HERE="$ROOT/deploy/kafka"
LIBS="$CACHE_DIR/kafka/libs"
PORT="${PODIUM_KAFKA_PORT:-9092}"
CPORT="${PODIUM_KAFKA_CONTROLLER_PORT:-9093}"
DATA="$RUN_DIR/kafka-data"
PIDFILE="$RUN_DIR/kafka.pid"
LOGFILE="$RUN_DIR/kafka.log"
HEAP="${PODIUM_KAFKA_HEAP:-512m}"
TIMEOUT="${PODIUM_KAFKA_START_TIMEOUT:-120}"

fetch() {
  if [[ -f "$LIBS/.complete" ]]; then return 0; fi
  command -v mvn >/dev/null || die "mvn not found (Maven is needed once to fetch the Kafka jars)"
  command -v java >/dev/null || die "java not found (Kafka 4.x needs Java 17+)"
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

write_config() {
  cat > "$RUN_DIR/kafka-server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=-1
PROPS
}

start() {
  if pid_alive "$PIDFILE"; then log "kafka: already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"; return 0; fi
  if port_open "$PORT"; then die "port $PORT is taken by another process; set PODIUM_KAFKA_PORT"; fi
  fetch
  write_config
  if [[ ! -f "$DATA/meta.properties" ]]; then
    mkdir -p "$DATA"
    local cluster_id; cluster_id="$(java_cmd kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
    log "kafka: formatting KRaft storage in $DATA (cluster $cluster_id)"
    java_cmd kafka.tools.StorageTool format --standalone -t "$cluster_id" \
      -c "$RUN_DIR/kafka-server.properties" >>"$LOGFILE" 2>&1 || die "storage format failed; see $LOGFILE"
  fi
  log "kafka: starting broker on 127.0.0.1:$PORT (log $LOGFILE)"
  local mark; mark=$(wc -l <"$LOGFILE" 2>/dev/null || echo 0)
  # setsid: own session, so a Ctrl-C in the terminal does not reach the broker; the shell
  # writes its PID and execs java (same PID)
  rm -f "$PIDFILE"
  setsid bash -c "echo \$\$ >'$PIDFILE'; exec java -Xms$HEAP -Xmx$HEAP -XX:+UseG1GC \
      -Djava.awt.headless=true -Dlog4j2.configurationFile='$HERE/log4j2.properties' \
      -cp '$LIBS/*' kafka.Kafka '$RUN_DIR/kafka-server.properties'" >>"$LOGFILE" 2>&1 </dev/null &
  local wait_pid=$((SECONDS + 10))
  until [[ -s "$PIDFILE" ]]; do (( SECONDS < wait_pid )) || die "kafka did not start"; sleep 0.05; done
  local deadline=$((SECONDS + TIMEOUT))
  until port_open "$PORT" && tail -n +"$((mark + 1))" "$LOGFILE" | grep -q "Kafka Server started"; do
    pid_alive "$PIDFILE" || { tail -n 30 "$LOGFILE" >&2; die "kafka exited during start-up; see $LOGFILE"; }
    (( SECONDS < deadline )) || { stop_pidfile kafka "$PIDFILE" 10; die "kafka not ready after ${TIMEOUT}s; see $LOGFILE"; }
    sleep 0.3
  done
  log "kafka: ready on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))"
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop_pidfile kafka "$PIDFILE" 60 ;;
  status) if pid_alive "$PIDFILE"; then echo "kafka running (pid $(cat "$PIDFILE"), port $PORT)"; else echo "kafka stopped"; exit 3; fi ;;
  *) echo "usage: $0 fetch|start|stop|status" >&2; exit 2 ;;
esac
