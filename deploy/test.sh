#!/usr/bin/env bash
# Runs the whole test suite against a real Kafka broker and a real Redis server, started once
# for the run through the same deploy scripts as `make up` (own ports and run dir), stopped after.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

export PODIUM_RUN_DIR="$ROOT/.run/test"
export PODIUM_KAFKA_PORT="${PODIUM_TEST_KAFKA_PORT:-19092}"
export PODIUM_KAFKA_CONTROLLER_PORT="${PODIUM_TEST_KAFKA_CONTROLLER_PORT:-19093}"
export PODIUM_REDIS_PORT="${PODIUM_TEST_REDIS_PORT:-16380}"
mkdir -p "$PODIUM_RUN_DIR"

cleanup() { "$ROOT/deploy/redis/redis.sh" stop || true; "$ROOT/deploy/kafka/kafka.sh" stop || true; }
trap cleanup EXIT

# The browser test drives Debian's chromium through Playwright (never `playwright install`).
if ! command -v chromium >/dev/null; then
  log "chromium not found, installing Debian's package for the browser test"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2 || die "apt-get install chromium failed"
fi

t0=$SECONDS
"$ROOT/deploy/kafka/kafka.sh" start
"$ROOT/deploy/redis/redis.sh" start
log "test infrastructure up in $((SECONDS - t0))s"

export PODIUM_TEST_KAFKA_BOOTSTRAP="127.0.0.1:$PODIUM_KAFKA_PORT"
export PODIUM_TEST_REDIS_URL="redis://127.0.0.1:$PODIUM_REDIS_PORT/0"
cd "$ROOT"
"$ROOT/.venv/bin/python" -m pytest "$@"
