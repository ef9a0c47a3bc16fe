#!/usr/bin/env bash
# Make the Dockerfile's base image (debian:bookworm-slim) available without a registry.
#
# Builds a minimal Debian bookworm root with debootstrap from this host's own apt mirror and
# imports it into the private podman storage (scripts/oci-env.sh) under the name the Dockerfile
# asks for. The root tarball is cached under $KEYSMITH_IMAGE_CACHE, keyed on a hash of this
# script, the host's apt sources and its local CA certificates, so reruns only re-import (3 s)
# or do nothing at all when the image is already in storage.
#
# The host's local CA certificates are copied into the root before ca-certificates is installed
# so that pip inside a RUN step trusts the same roots as the host (an egress proxy here). This
# is for the test base image only; the Dockerfile itself never adds certificates.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=scripts/oci-env.sh
source "$here/oci-env.sh"

base_ref="docker.io/library/debian:bookworm-slim"
cache="$KEYSMITH_IMAGE_CACHE"
mkdir -p "$cache"

apt_sources() { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
  /etc/apt/sources.list.d/*.list 2>/dev/null || true; }
local_cas() { find /usr/local/share/ca-certificates -type f -name '*.crt' 2>/dev/null | sort; }

key="$( { cat "$0"; apt_sources; local_cas | xargs -r cat; } | sha256sum | cut -c1-16)"
tarball="$cache/base-bookworm-$key.tar"

# One builder at a time per cache folder (parallel test runs share it).
exec 9>"$cache/base.lock"
flock 9

if [ "$(podman image inspect --format '{{index .Labels "keysmith.base-key"}}' "$base_ref" \
      2>/dev/null || true)" = "$key" ]; then
  exit 0
fi

if [ ! -s "$tarball" ]; then
  # The first deb.debian.org http mirror the host uses; debootstrap needs plain http here.
  mirror="$(apt_sources | grep -Ev '^[[:space:]]*#' | grep -Eo 'http://[^ ]*/debian/?( |$)' \
    | tr -d ' ' | head -n1)"
  mirror="${mirror:-http://deb.debian.org/debian}"
  rootfs="$(mktemp -d "$cache/rootfs.XXXXXX")"
  trap 'rm -rf "$rootfs"' EXIT
  echo "base-image: debootstrap bookworm from $mirror (about 30 s)" >&2
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 || {
    echo "base-image: debootstrap failed; see $cache/debootstrap.log" >&2
    tail -n 20 "$cache/debootstrap.log" >&2
    exit 1
  }
  # Only Debian's own sources (a host may list third-party repos whose keys are not in the root).
  rm -f "$rootfs/etc/apt/sources.list"
  rm -rf "$rootfs/etc/apt/sources.list.d"
  mkdir -p "$rootfs/etc/apt/sources.list.d"
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/debian.sources; do
    [ -f "$f" ] && cp "$f" "$rootfs$f"
  done
  mkdir -p "$rootfs/usr/local/share/ca-certificates"
  local_cas | xargs -r -I{} cp {} "$rootfs/usr/local/share/ca-certificates/"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb
  tar -C "$rootfs" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  # Roots built from older inputs are never used again.
  find "$cache" -maxdepth 1 -name 'base-bookworm-*.tar' ! -name "$(basename "$tarball")" -delete
fi

echo "base-image: importing $tarball as $base_ref" >&2
previous="$(podman image inspect --format '{{.Id}}' "$base_ref" 2>/dev/null || true)"
podman import -q --change 'CMD ["bash"]' --change "LABEL keysmith.base-key=$key" \
  "$tarball" "$base_ref" >/dev/null
# The superseded base is useless once nothing is built on it; while cached layers still use
# it, podman refuses and it stays (harmless).
if [ -n "$previous" ]; then
  podman rmi "$previous" >/dev/null 2>&1 || true
fi
