#!/bin/sh
# The images' entry point. Under compose every app and bridge container
# mounts one volume at $AIES_SECRETS_DIR: the first to start makes each
# shared secret there (ln is atomic, so two starting at once agree), the
# others read it, and a value given in the environment wins. The secrets
# are never printed. Without $AIES_SECRETS_DIR (Kubernetes, a plain
# `docker run`) the environment alone is used.
set -eu
dir=${AIES_SECRETS_DIR:-}
secret() { # file variable...
  file="$dir/$1"
  shift
  if [ ! -s "$file" ]; then
    umask 077
    # A name of its own: every container's shell is PID 1, so "$file.$$"
    # was one file for all, and a second container truncated the secret
    # the first had just linked (seen: an app with an empty invoke token).
    tmp=$(mktemp "$file.XXXXXX")
    od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$tmp"
    ln "$tmp" "$file" 2>/dev/null || true
    rm -f "$tmp"
  fi
  value=$(cat "$file")
  for var; do
    eval "[ -n \"\${$var:-}\" ] || export $var=\"\$value\""
  done
}
if [ -n "$dir" ]; then
  secret invoke-token AIES_INVOKE_TOKEN SPIN_VARIABLE_INVOKE_TOKEN
  secret enqueue-token AIES_ENQUEUE_TOKEN SPIN_VARIABLE_ENQUEUE_TOKEN
  secret admin-token SPIN_VARIABLE_ADMIN_TOKEN
  secret bridge-key AIES_BRIDGE_KEY
fi
exec "$@"
