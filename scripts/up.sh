#!/usr/bin/env bash
# Starts the whole system locally: Redis Stack (RediSearch), the Tansu
# Kafka-protocol broker, the topics, the Spin app on the aies-host runner and
# the bridge. Data lives under .data/. Ctrl-C stops everything.
#
# Providers: with GOOGLE_API_KEY set, Gemini answers; with OPENAI_BASE_URL
# (and OPENAI_API_KEY if needed) set, an OpenAI-compatible server answers;
# otherwise an offline stand-in, labeled as such, answers.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
. scripts/env.sh

REDIS_HOST=${REDIS_HOST:-127.0.0.1}
REDIS_PORT=${REDIS_PORT:-6379}
KAFKA_BOOTSTRAP_SERVERS=${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}
HTTP_LISTEN=${AIES_LISTEN:-127.0.0.1:3000}
BRIDGE_LISTEN=${AIES_BRIDGE_LISTEN:-127.0.0.1:3100}
data="$here/.data"
mkdir -p "$data/redis" "$data/kafka" "$data/logs"

for f in "$REDIS_SERVER_BIN" "$REDISEARCH_SO" "$TANSU_BIN"; do
  [ -e "$f" ] || { echo "missing $f: run 'make setup' first" >&2; exit 1; }
done

# Children get process groups of their own (job control), so Ctrl-C reaches
# only this script, which then stops them in order: bridge, host, broker, Redis.
set -m
pids=()
stop() { # pid
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 1 150); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  echo "process $1 did not stop in 15 s; killing it" >&2
  kill -KILL "$1" 2>/dev/null || true
}
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "stopping..."
  for ((i=${#pids[@]}-1; i>=0; i--)); do stop "${pids[$i]}"; done
  echo "stopped"
}
trap cleanup INT TERM EXIT

wait_port() { # host:port name
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$2 did not come up on $1; see $data/logs/" >&2
  exit 1
}

echo "==> building (components for wasm32-wasip2, host and bridge)"
make -s build

if [ "$REDIS_HOST" = 127.0.0.1 ] || [ "$REDIS_HOST" = localhost ]; then
  "$REDIS_SERVER_BIN" --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$data/redis" \
    --appendonly yes --loadmodule "$REDISEARCH_SO" --save 60 1 \
    >"$data/logs/redis.log" 2>&1 &
  pids+=($!)
  wait_port "127.0.0.1:$REDIS_PORT" "Redis"
fi

if [ "$KAFKA_BOOTSTRAP_SERVERS" = 127.0.0.1:9092 ]; then
  (cd "$data/kafka" && exec "$TANSU_BIN" broker \
    --listener-url tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092 \
    --storage-engine sqlite://tansu.db) >"$data/logs/tansu.log" 2>&1 &
  pids+=($!)
  wait_port 127.0.0.1:9092 "Tansu"
  for t in datos_crudos datos_procesados datos_crudos_dlq; do
    "$TANSU_BIN" topic create "$t" --partitions 3 --broker tcp://127.0.0.1:9092 \
      >>"$data/logs/tansu.log" 2>&1 || true # already there on later runs
  done
fi

token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
export SPIN_VARIABLE_REDIS_HOST="$REDIS_HOST" SPIN_VARIABLE_REDIS_PORT="$REDIS_PORT"
export SPIN_VARIABLE_BRIDGE_URL="http://$BRIDGE_LISTEN" SPIN_VARIABLE_INVOKE_TOKEN="$token"
[ -n "${VECTOR_DIMENSION:-}" ] && export SPIN_VARIABLE_VECTOR_DIMENSION="$VECTOR_DIMENSION"
[ -n "${GOOGLE_API_KEY:-}" ] && export SPIN_VARIABLE_GOOGLE_API_KEY="$GOOGLE_API_KEY"
[ -n "${GEMINI_MODEL:-}" ] && export SPIN_VARIABLE_GEMINI_MODEL="$GEMINI_MODEL"
[ -n "${OPENAI_BASE_URL:-}" ] && export SPIN_VARIABLE_OPENAI_BASE_URL="${OPENAI_BASE_URL%/}"
[ -n "${OPENAI_API_KEY:-}" ] && export SPIN_VARIABLE_OPENAI_API_KEY="$OPENAI_API_KEY"
[ -n "${OPENAI_MODEL:-}" ] && export SPIN_VARIABLE_OPENAI_MODEL="$OPENAI_MODEL"

if [ -n "${GOOGLE_API_KEY:-}" ]; then
  llm="Gemini (${GEMINI_MODEL:-gemini-2.0-flash})"
elif [ -n "${OPENAI_BASE_URL:-}${OPENAI_API_KEY:-}" ]; then
  llm="OpenAI-compatible at ${OPENAI_BASE_URL:-https://api.openai.com}"
else
  llm="OFFLINE STAND-IN (not a real LLM: set GOOGLE_API_KEY or OPENAI_BASE_URL)"
fi

"${CARGO_TARGET_DIR:-target}/release/aies-host" --listen "$HTTP_LISTEN" >"$data/logs/host.log" 2>&1 &
pids+=($!)
wait_port "$HTTP_LISTEN" "aies-host"

KAFKA_BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP_SERVERS" AIES_BRIDGE_LISTEN="$BRIDGE_LISTEN" \
  AIES_INVOKE_URL="http://$HTTP_LISTEN/invoke" AIES_INVOKE_TOKEN="$token" \
  "${CARGO_TARGET_DIR:-target}/release/aies-bridge" >"$data/logs/bridge.log" 2>&1 &
pids+=($!)
wait_port "$BRIDGE_LISTEN" "aies-bridge"

cat <<BANNER

  AI-EventStream is up
  API        http://$HTTP_LISTEN   (POST /process, GET /task/{id}, GET /metrics, GET /health)
  LLM        $llm
  Embeddings local all-MiniLM-L6-v2 (offline)
  Redis      $REDIS_HOST:$REDIS_PORT (data in .data/redis)
  Kafka      $KAFKA_BOOTSTRAP_SERVERS (topics datos_crudos, datos_procesados, datos_crudos_dlq)
  Bridge     http://$BRIDGE_LISTEN
  Logs       .data/logs/

  Try: curl -s -XPOST http://$HTTP_LISTEN/process -H 'content-type: application/json' \\
         -d '{"prompt":"What is the capital of France?"}'
  Ctrl-C stops everything.

BANNER
# Exit (and stop the rest) as soon as any process dies.
wait -n "${pids[@]}"
echo "a process exited; see .data/logs/" >&2
