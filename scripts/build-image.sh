#!/usr/bin/env bash
# Build the service image from the Dockerfile.
#
#   scripts/build-image.sh [--platform linux/amd64|linux/arm64] [--output FILE.tar] TAG [CONTEXT]
#
# With a Docker engine: `docker buildx build` (what the marketplace build uses). Without one
# (CI here): buildah with private settings (scripts/oci-env.sh), the base image made locally by
# scripts/base-image.sh, layer caching on, so a rebuild that only changes migrations/ reuses
# every dependency layer. --output writes a docker-archive tarball for `start-sdk pack`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

platform="" output=""
while [ $# -gt 0 ]; do
  case "$1" in
    --platform) platform="$2"; shift 2 ;;
    --output) output="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    -*) echo "build-image: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { echo "usage: build-image.sh [--platform P] [--output F.tar] TAG [CONTEXT]" >&2; exit 2; }
tag="$1"
context="${2:-$here/..}"
[ -n "$output" ] && mkdir -p "$(dirname "$output")"

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 && [ -z "${KEYSMITH_FORCE_BUILDAH:-}" ]; then
  args=(buildx build --tag "$tag")
  [ -n "$platform" ] && args+=(--platform "$platform")
  if [ -n "$output" ]; then args+=(-o "type=docker,dest=$output"); else args+=(--load); fi
  exec docker "${args[@]}" "$context"
fi

for tool in buildah podman; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "build-image: no Docker engine and no $tool; install buildah podman debootstrap runc" >&2
    exit 1
  }
done
host_platform="linux/$(podman info --format '{{.Host.Arch}}' 2>/dev/null || echo amd64)"
if [ -n "$platform" ] && [ "$platform" != "$host_platform" ]; then
  echo "build-image: $platform needs docker buildx (with QEMU); buildah here builds only" \
    "$host_platform, from a locally made base image" >&2
  exit 1
fi

# shellcheck source=scripts/oci-env.sh
source "$here/oci-env.sh"
"$here/base-image.sh"
echo "build-image: WARNING: built on a locally made stand-in for debian:bookworm-slim" \
  "(scripts/base-image.sh), which trusts this machine's CA certificates: fine for tests, not" \
  "for a release. Build a release where a Docker engine runs (docker buildx) or with start-cli." >&2
# One build at a time per image cache: two builds of the Dockerfile at once on a fresh cache
# each run every step and cache their own layers (a RUN step does not give the same bytes twice),
# and a later build may continue from either chain, so it no longer shares the first's layers.
exec 7>"$KEYSMITH_IMAGE_CACHE/oci/build.lock"
flock 7
previous="$(podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
buildah bud --quiet --isolation chroot --pull=never --network host --layers --format docker \
  -t "$tag" "$context" >/dev/null
# The image this tag named before is now untagged: drop it so rebuilds do not pile up. The
# intermediate layer images (the cache that makes rebuilds fast) are separate and stay.
current="$(podman image inspect --format '{{.Id}}' "$tag")"
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
  podman rmi "$previous" >/dev/null 2>&1 || true
fi
if [ -n "$output" ]; then
  rm -f "$output"
  podman save --quiet --format docker-archive -o "$output" "$tag"
  # podman tags it "localhost/start9/..."; start-sdk expects docker's bare "start9/...".
  python3 "$here/archive_tags.py" "$output"
fi
