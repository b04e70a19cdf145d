#!/usr/bin/env bash
# Builds, then hands over to aies-up, which starts the whole system and owns
# it: Redis Stack (RediSearch), the Tansu Kafka-protocol broker, the Spin app
# on the aies-host runner and the bridge. Data lives under .data/. Ctrl-C,
# SIGTERM or SIGHUP stops everything, in order (see crates/up).
#
# Providers: with GOOGLE_API_KEY set, Gemini answers; with OPENAI_BASE_URL
# (and OPENAI_API_KEY if needed) set, an OpenAI-compatible server answers;
# otherwise an offline stand-in, labeled as such, answers.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
. scripts/env.sh

echo "==> building (components for wasm32-wasip2, host, bridge, aies-up)"
make -s build
exec "${CARGO_TARGET_DIR:-target}/release/aies-up" "$@"
