#!/usr/bin/env bash
# Checks the deployment files offline: renders deploy/kubernetes's
# kustomizations, validates every object against the Kubernetes API's
# schemas and the vendored SpinApp CRD, and cross-checks them with
# spin.toml, the bridge's settings and deploy/spin/ (scripts/check-deploy.py
# says what exactly). Exits non-zero on any problem.
#   scripts/check-deploy.sh [ROOT]   (ROOT: a checkout or copy; default this one)
# Its Python tools live in a venv under $AIES_CACHE keyed by
# scripts/requirements-deploy.txt, made on first use (24 MB of wheels, 144 MB
# installed: the Kubernetes schemas of 13 releases).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/env.sh"
requirements="$here/scripts/requirements-deploy.txt"
venv="$AIES_CACHE/deploy-venv-$(sha256sum "$requirements" | cut -c1-12)"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  mkdir -p "$AIES_CACHE"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
  touch "$venv/.complete"
fi
exec "$venv/bin/python" "$here/scripts/check-deploy.py" "${1:-$here}"
