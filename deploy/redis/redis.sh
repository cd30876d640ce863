#!/usr/bin/env bash
# Redis for Podium: Debian's redis-server on its own port and data dir, AOF on, managed by PID.
#   deploy/redis/redis.sh install  apt-get install redis-server when it is missing
#   deploy/redis/redis.sh start    start (installing first if needed) and wait for PING
#   deploy/redis/redis.sh stop     SHUTDOWN the server this script started
#   deploy/redis/redis.sh status
# Settings (env): PODIUM_REDIS_PORT (6380), PODIUM_RUN_DIR (.run), PODIUM_REDIS_MAXMEMORY (unset).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

PORT="${PODIUM_REDIS_PORT:-6380}"
DATA="$RUN_DIR/redis-data"
PIDFILE="$RUN_DIR/redis.pid"
LOGFILE="$RUN_DIR/redis.log"

install() {
  command -v redis-server >/dev/null && return 0
  log "redis: redis-server not found, installing Debian's package"
  apt_install redis-server
  # The package may start its own service on 6379; Podium runs its own server, so stop that one.
  (service redis-server stop >/dev/null 2>&1 || true)
}

start() {
  if pid_alive "$PIDFILE"; then log "redis: already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"; return 0; fi
  install
  if port_open "$PORT"; then die "port $PORT is taken by another process; set PODIUM_REDIS_PORT"; fi
  mkdir -p "$DATA"
  redis-server --bind 127.0.0.1 --port "$PORT" --dir "$DATA" --daemonize yes \
    --pidfile "$PIDFILE" --logfile "$LOGFILE" \
    --appendonly yes --appendfsync everysec --save "" \
    ${PODIUM_REDIS_MAXMEMORY:+--maxmemory "$PODIUM_REDIS_MAXMEMORY"} >/dev/null
  local deadline=$((SECONDS + 30))
  until [[ "$(redis-cli -p "$PORT" ping 2>/dev/null)" == "PONG" ]]; do
    (( SECONDS < deadline )) || die "redis not answering PING after 30s; see $LOGFILE"
    sleep 0.1
  done
  log "redis: ready on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"), AOF in $DATA)"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop_pidfile redis "$PIDFILE" 30 ;;
  status) if pid_alive "$PIDFILE"; then echo "redis running (pid $(cat "$PIDFILE"), port $PORT)"; else echo "redis stopped"; exit 3; fi ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
