# Keysmith service image for StartOS: Debian bookworm-slim, Debian's python3 in a venv,
# dependencies pinned by hash (requirements.lock, see scripts/lock.sh), tini as PID 1.
# Builds unchanged with `docker buildx build` (marketplace) and `buildah bud` (CI, no engine).
# Layer order puts what changes least first: a new migration rebuilds only the last layer.

# ---- build stage: the virtualenv, made with Debian's python3 and pip (no compiler needed:
# every locked dependency installs from a binary wheel, --only-binary refuses anything else).
FROM debian:bookworm-slim AS venv

# DL3008: packages are not version-pinned because Debian stable's security updates replace
# exact versions on the mirror; bookworm itself is the pin.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*

COPY requirements.lock /tmp/requirements.lock
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
      --require-hashes --only-binary=:all: -r /tmp/requirements.lock \
 && /opt/venv/bin/pip uninstall -y --disable-pip-version-check pip setuptools

# ---- final stage: python3 and tini only; no pip, no apt lists, no build tools.
FROM debian:bookworm-slim

# DL3008: see above.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 tini \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data

COPY --from=venv /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    KEYSMITH_DB_PATH=/data/keysmith.db \
    KEYSMITH_MIGRATIONS_DIR=/app/migrations \
    KEYSMITH_BIND=0.0.0.0:8080

WORKDIR /app
COPY scripts/docker_entrypoint.sh /usr/local/bin/docker_entrypoint.sh
COPY daemon/ /app/daemon/
# Bytecode compiled once here, not by every health check run in a fresh process.
RUN python -m compileall -q /app/daemon
COPY migrations/ /app/migrations/

# Runs as root: StartOS 0.3.5 mounts the data volume owned by root, and the container is the
# service's own sandbox. The data volume is mounted at /data (manifest.yaml `mounts`).
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/docker_entrypoint.sh"]
