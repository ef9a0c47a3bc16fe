#!/bin/sh
# Container entrypoint (manifest.yaml `main`, and the image's ENTRYPOINT).
#
# tini becomes PID 1 through `exec`, so SIGTERM from `podman stop` (StartOS's stop) reaches the
# daemon, which then finishes in-flight requests and closes the database cleanly; tini also
# reaps any orphaned child. With no arguments the daemon serves; any arguments are passed to
# `python -m daemon` instead (e.g. `migrate status`), still under tini.
set -eu

db_path="${KEYSMITH_DB_PATH:-/data/keysmith.db}"
if ! mkdir -p "$(dirname "$db_path")"; then
  echo "keysmith: cannot create the data folder for $db_path; is the data volume mounted?" >&2
  exit 1
fi

if [ "$#" -eq 0 ]; then
  set -- serve
fi
exec tini -g -- python -m daemon "$@"
