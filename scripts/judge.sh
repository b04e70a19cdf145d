#!/usr/bin/env bash
# Trains the cache's near-duplicate judge (issue 22) on the tuning split and
# links it into .spin/ai-models/aies-judge/ (multilingual-e5-small's files,
# whose first layers it runs, and its judge.json). Trained here from data
# the project ships, never downloaded: aies-judge-train computes the
# features (the host's own code), scripts/judge-train.py fits them with
# scikit-learn. Kept under $AIES_CACHE, keyed by everything it is made
# from, so it is trained again only when one of them changes.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/env.sh"
cd "$here"
key=$(cat tests/data/cache_eval/pairs.jsonl host/src/llm/judge.rs host/src/llm/model.rs \
  tests/judge_train.rs scripts/judge-train.py scripts/requirements-tools.txt | sha256sum | cut -c1-12)
store="$AIES_CACHE/judge-$key"
if [ ! -f "$store/judge.json" ]; then
  [ -x "$AIES_VENV/bin/python" ] || { echo "no tools venv at $AIES_VENV: run make setup" >&2; exit 1; }
  echo "training the judge on the tuning split (about 2 minutes)"
  cargo build --release --locked -q -p aies-tests --bin aies-judge-train
  mkdir -p "$store.partial"
  "${CARGO_TARGET_DIR:-target}/release/aies-judge-train" .spin/ai-models "$store.partial/features.json"
  "$AIES_VENV/bin/python" scripts/judge-train.py "$store.partial/features.json" "$store.partial/judge.json" \
    | tee "$store.partial/training.txt"
  rm -f "$store.partial/features.json"
  rm -rf "$store" && mv "$store.partial" "$store"
else
  echo "aies-judge: trained before ($store)"
fi
dest=.spin/ai-models/aies-judge
mkdir -p "$dest"
for f in model.safetensors tokenizer.json config.json; do
  ln -sfn "$(readlink -f .spin/ai-models/multilingual-e5-small/$f)" "$dest/$f"
done
ln -sfn "$store/judge.json" "$dest/judge.json"
echo "aies-judge linked from $store"
