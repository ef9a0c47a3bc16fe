#!/usr/bin/env bash
# Regenerate requirements.lock: the image's exact runtime dependencies, with every file's hash,
# resolved from pyproject.toml's [project] dependencies (not the test extras) against PyPI only.
#
#   bash scripts/lock.sh            # keep current pins where still allowed
#   bash scripts/lock.sh --upgrade  # move every pin to the newest allowed release
#
# pip-tools lives in a throwaway venv so the project's own venv is not touched. Run it with the
# same minor Python as the image (Debian bookworm: 3.11) so environment markers resolve alike.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="${KEYSMITH_LOCK_VENV:-/var/tmp/keysmith-lock-venv}"
export PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS=
[ -x "$tools/bin/pip-compile" ] || {
  python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet --index-url https://pypi.org/simple pip-tools
}
cd "$root"
"$tools/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras \
  --no-emit-index-url --index-url https://pypi.org/simple \
  --output-file requirements.lock "$@" pyproject.toml
