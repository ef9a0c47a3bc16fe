#!/usr/bin/env bash
# Private buildah/podman settings for machines without a Docker engine (see oci-in-ci.md).
#
# Sourced: exports CONTAINERS_STORAGE_CONF and CONTAINERS_CONF pointing at files under
# $KEYSMITH_IMAGE_CACHE (default /var/tmp/keysmith-image-cache), so nothing global changes.
# Executed with --print: prints those variables as KEY=VALUE lines (the image test reads them).
#
# Why each setting: runc because crun refuses hybrid cgroup hosts; cgroupfs and a file events
# logger because there is no systemd; explicit ulimits because podman's default of 1048576 open
# files is above this kind of host's hard limit ("setrlimit RLIMIT_NOFILE: Operation not permitted").
set -euo pipefail

KEYSMITH_IMAGE_CACHE="${KEYSMITH_IMAGE_CACHE:-/var/tmp/keysmith-image-cache}"
oci_home="$KEYSMITH_IMAGE_CACHE/oci"
mkdir -p "$oci_home/graph" "$oci_home/run" "$oci_home/tmp"

nofile="$(ulimit -Hn)"
[ "$nofile" = unlimited ] && nofile=65536
[ "$nofile" -gt 65536 ] && nofile=65536
nproc=32768

# Several processes may source this at once (two test workers, a build beside a test): the probe
# and the rewrite of the two files happen under one lock, so none reads a half-written file.
exec 8>"$oci_home/env.lock"
flock 8

# The storage driver is decided once per cache folder: overlay when the kernel allows it here,
# vfs otherwise (slower, always works).
driver_file="$oci_home/driver"
if [ ! -s "$driver_file" ]; then
  probe="$(mktemp -d "$oci_home/tmp/probe.XXXXXX")"
  mkdir -p "$probe/l" "$probe/u" "$probe/w" "$probe/m"
  if mount -t overlay overlay -o "lowerdir=$probe/l,upperdir=$probe/u,workdir=$probe/w" \
      "$probe/m" 2>/dev/null; then
    umount "$probe/m"
    echo overlay >"$driver_file"
  else
    echo vfs >"$driver_file"
  fi
  rm -rf "$probe"
fi
driver="$(cat "$driver_file")"

cat >"$oci_home/storage.conf.new" <<CONF
[storage]
driver = "$driver"
runroot = "$oci_home/run"
graphroot = "$oci_home/graph"
CONF
cat >"$oci_home/containers.conf.new" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$oci_home/tmp"
CONF
mv "$oci_home/storage.conf.new" "$oci_home/storage.conf"
mv "$oci_home/containers.conf.new" "$oci_home/containers.conf"
flock -u 8
exec 8>&-

export CONTAINERS_STORAGE_CONF="$oci_home/storage.conf"
export CONTAINERS_CONF="$oci_home/containers.conf"
export KEYSMITH_IMAGE_CACHE

if [ "${1:-}" = --print ]; then
  echo "CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF"
  echo "CONTAINERS_CONF=$CONTAINERS_CONF"
  echo "KEYSMITH_IMAGE_CACHE=$KEYSMITH_IMAGE_CACHE"
fi
