#!/usr/bin/env bash
# Prepares the image build contexts from this machine's build, for
# compose.local.yaml: target/docker/{app,bridge,redis,tansu}/, each with
# deploy/docker/ and a `prebuilt/` folder that the Dockerfiles copy instead
# of compiling (`make build` and `make setup` first). Models and binaries
# are copied, not linked: a build context cannot follow links out of it.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
. "$here/scripts/env.sh"
out=${AIES_DOCKER_CONTEXT:-$here/target/docker}
bin=${CARGO_TARGET_DIR:-$here/target}/release
wasm=$here/components/target/wasm32-wasip2/release

context() { # name: a fresh context with the Dockerfiles
  rm -rf "${out:?}/$1"
  mkdir -p "$out/$1/prebuilt" "$out/$1/deploy"
  cp -r "$here/deploy/docker" "$out/$1/deploy/"
}
need() {
  for f; do [ -e "$f" ] || { echo "missing $f: run make setup and make build" >&2; exit 1; }; done
}

need "$bin/aies-host" "$bin/aies-bridge" "$wasm/ingest.wasm" "$here/.spin/ai-models" \
  "$TANSU_BIN" "$REDIS_SERVER_BIN" "$REDISEARCH_SO"

# Without their debug information (the release profile keeps it for
# profiling): a third of the size.
context app
strip -o "$out/app/prebuilt/aies-host" "$bin/aies-host"
app=$out/app/prebuilt/app
mkdir -p "$app/components/target/wasm32-wasip2/release" "$app/.spin"
cp "$here/spin.toml" "$app/"
cp "$wasm"/*.wasm "$app/components/target/wasm32-wasip2/release/"
cp -rL "$here/.spin/ai-models" "$app/.spin/"
# The judge runs e5's first layers: its files once, not twice (470 MB).
for f in model.safetensors tokenizer.json config.json; do
  ln -sfn "../multilingual-e5-small/$f" "$app/.spin/ai-models/aies-judge/$f"
done

context bridge
strip -o "$out/bridge/prebuilt/aies-bridge" "$bin/aies-bridge"

context tansu
cp "$TANSU_BIN" "$out/tansu/prebuilt/tansu"

context redis
cp "$REDIS_SERVER_BIN" "$out/redis/prebuilt/redis-server"
cp "$REDISEARCH_SO" "$out/redis/prebuilt/redisearch.so"

# The image's user must read what the files' owner here may keep to itself
# (the converted model is written 0600).
chmod -R a+rX "$out"
du -sh "$out"/* | sed 's/^/staged /'
