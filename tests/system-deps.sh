#!/usr/bin/env bash
# Debian tools some tests use (sqlite3 shell, promtool, wrk for the validate bench smoke run,
# chromium for the console's browser tests, buildah/podman for the image test, node and npm for
# the StartOS 0.4 package, ip and unshare for the LAN-client test's network namespace,
# squashfs-tools and squashfs-tools-ng for the .s9pk that plain `make` writes without start-cli).
# Installed only when running as root and missing; tests that need a tool skip when it is absent
# outside CI, and CI (CI=true) always runs as root here, so there they are present.
set -euo pipefail
# command -> Debian package; the image tests need buildah..uidmap, the 0.4 backup test rsync.
# Playwright drives Debian's chromium (tests/test_console.py); it never downloads a browser.
want=(sqlite3 promtool wrk chromium buildah podman debootstrap runc newuidmap rsync node npm ip unshare
      mksquashfs tar2sqfs)
pkgs=(sqlite3 prometheus wrk chromium buildah podman debootstrap runc uidmap rsync nodejs npm iproute2
      util-linux squashfs-tools squashfs-tools-ng)
missing=()
for i in "${!want[@]}"; do
  command -v "${want[$i]}" >/dev/null 2>&1 || missing+=("${pkgs[$i]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: not root; tests needing ${missing[*]} will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
