# Shared paths for the scripts. Sourced, not run.
AIES_CACHE=${AIES_CACHE:-$HOME/.cache/ai-eventstream}
TANSU_VERSION=0.6.0
TANSU_BIN="$AIES_CACHE/tansu-$TANSU_VERSION-libsql/bin/tansu"
# Keyed by the requirements so a change of versions makes a new venv.
AIES_VENV="$AIES_CACHE/venv-$(sha256sum "$(dirname "${BASH_SOURCE[0]}")/requirements-tools.txt" | cut -c1-12)"
export AIES_CACHE TANSU_VERSION TANSU_BIN AIES_VENV
