#!/usr/bin/env bash
# Build <id>_<arch>.s9pk without start-cli (the Makefile's path when start-cli is not on PATH):
# the image for ARCH from the Dockerfile (scripts/build-image.sh, buildah here), then
# scripts/s9pk/pack.mjs packs it with the bundle, icon, license, instructions and assets.
#
#   scripts/s9pk/build.sh ARCH OUTPUT      (ARCH: x86_64 | aarch64)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
[ $# -eq 2 ] || { echo "usage: build.sh ARCH OUTPUT" >&2; exit 2; }
arch="$1" output="$2"
case "$arch" in
  x86_64) platform=linux/amd64 ;;
  aarch64) platform=linux/arm64 ;;
  *) echo "s9pk build: no image platform for $arch (x86_64 or aarch64)" >&2; exit 2 ;;
esac
for tool in mksquashfs tar2sqfs node podman; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "s9pk build: $tool is not installed (apt-get install squashfs-tools squashfs-tools-ng" \
      "nodejs podman buildah; tests/system-deps.sh does it in CI)" >&2
    exit 1
  }
done
# The tag start-cli gives the image it builds is start9/<id>/<image>:<random>; one per arch here.
tag="localhost/start9/keysmith/main:s9pk-$arch"
KEYSMITH_FORCE_BUILDAH="${KEYSMITH_FORCE_BUILDAH:-}" bash "$repo/scripts/build-image.sh" \
  --platform "$platform" "$tag" "$repo"
# shellcheck source=scripts/oci-env.sh
source "$repo/scripts/oci-env.sh"
cd "$repo"
node "$here/pack.mjs" --arch "$arch" --image-tag "$tag" -o "$output" ${S9PK_KEY:+--key "$S9PK_KEY"}
