#!/usr/bin/env bash
# Makes the local base image `aies-base:bookworm` from Debian's packages,
# for machines that cannot pull images (no registry here): debootstrap a
# minimal Debian 12 into a folder, then `docker import` it. The folder's
# tarball is cached under $AIES_CACHE, keyed by this recipe, so a second
# run (or CI on the same machine) only imports it, and an image already
# present is left alone. Users with a registry never need this: the
# Dockerfiles' default base is the public debian:bookworm-slim.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
. "$here/scripts/env.sh"

image=${AIES_BASE_IMAGE:-aies-base:bookworm}
# What the images need beyond minbase: CA roots for HTTPS to the LLM
# providers, libstdc++ for Redis, libcurl4 for the bridge's OAUTHBEARER OIDC,
# sqlite3 to index the broker's store.
packages=ca-certificates,libstdc++6,libcurl4,sqlite3
key=$(printf '%s\n' bookworm minbase "$packages" | sha256sum | cut -c1-12)
tarball="$AIES_CACHE/base-bookworm-$key.tar"

# Present and made from these packages (an older base is replaced).
label='{{ index .Config.Labels "aies.base-key" }}'
if [ "$(docker image inspect -f "$label" "$image" 2>/dev/null)" = "$key" ]; then
  echo "$image: present"
  exit 0
fi
if [ ! -f "$tarball" ]; then
  command -v debootstrap >/dev/null || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap
  }
  root=$(mktemp -d "$AIES_CACHE/base-root.XXXXXX")
  trap 'rm -rf "$root"' EXIT
  echo "debootstrap bookworm (minbase + $packages) into $root: about a minute"
  debootstrap --variant=minbase --include="$packages" bookworm "$root" \
    http://deb.debian.org/debian >"$root.log" 2>&1 || {
    tail -20 "$root.log" >&2
    exit 1
  }
  rm -f "$root.log"
  # Apt's lists and caches are not needed in an image.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*
  tar -C "$root" -cf "$tarball.partial" .
  mv "$tarball.partial" "$tarball"
fi
docker import --change "LABEL aies.base-key=$key" - "$image" <"$tarball" >/dev/null
echo "$image: imported from $tarball"
