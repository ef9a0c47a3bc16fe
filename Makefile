# Developer entry points. `make run` and `make test` are the README's two commands.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: run test lint bench bench-peers bench-validate bench-scale soak venv

# The virtualenv is rebuilt whenever pyproject.toml changes. The editable install uses compat
# mode: a plain path entry, not an import hook that every interpreter start would pay for.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]' --config-settings editable_mode=compat
	touch $@

venv: $(VENV)/.installed

## Start the daemon on the embedded default database (./data/keysmith.db).
run: venv
	$(PY) -m daemon serve

## Install what the suite needs (Python packages, and Debian tools when root), lint, run every test.
test: venv
	bash tests/system-deps.sh
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

## Full-size benchmarks and the crash soak (none of them part of `make test`).
bench: venv
	$(PY) bench/bench_migrate.py

bench-peers: venv
	$(PY) bench/bench_peers.py --results bench/RESULTS.md

bench-validate: venv
	bash tests/system-deps.sh
	$(PY) bench/bench_validate.py

bench-scale: venv
	bash tests/system-deps.sh
	$(PY) bench/bench_scale.py

soak: venv
	$(PY) -m tests.crash_harness --kills 500

# ---- The StartOS package: image, per-architecture tarballs, .s9pk ----------------------------
# `make image` needs either a Docker engine (docker buildx) or, without one, buildah + podman +
# debootstrap + runc as root (the base image is then made locally; see scripts/README.md).
# `make pack` / `make verify` need start-sdk. Outputs: docker-images/*.tar, keysmith.s9pk.
PKG_ID       := $(shell sed -n 's/^id: *//p' manifest.yaml)
PKG_VERSION  := $(shell sed -n 's/^version: *"\(.*\)"/\1/p' manifest.yaml)
IMAGE_TAG    := start9/$(PKG_ID)/main:$(PKG_VERSION)
ARCHES       ?= x86_64 aarch64
IMAGE_INPUTS := Dockerfile .dockerignore requirements.lock scripts/docker_entrypoint.sh \
                $(shell find daemon migrations -type f ! -path '*/__pycache__/*' ! -name '*.pyc')

.PHONY: image x86 arm pack verify clean
# A half-written tarball or .s9pk must never look finished.
.DELETE_ON_ERROR:

## Build start9/keysmith/main:<version> for this machine's architecture.
image:
	bash scripts/build-image.sh $(IMAGE_TAG)

## docker-images/x86_64.tar and docker-images/aarch64.tar, as start-sdk pack expects them.
x86: docker-images/x86_64.tar
arm: docker-images/aarch64.tar

docker-images/x86_64.tar: $(IMAGE_INPUTS)
	bash scripts/build-image.sh --platform linux/amd64 --output $@ $(IMAGE_TAG)

docker-images/aarch64.tar: $(IMAGE_INPUTS)
	bash scripts/build-image.sh --platform linux/arm64 --output $@ $(IMAGE_TAG)

## keysmith.s9pk from the manifest, assets and the image tarballs (ARCHES=x86_64 for one arch).
pack: $(PKG_ID).s9pk

$(PKG_ID).s9pk: manifest.yaml LICENSE icon.png instructions.md $(ARCHES:%=docker-images/%.tar)
	@command -v start-sdk >/dev/null 2>&1 || { \
	  echo "make pack: start-sdk is not installed; see scripts/README.md" >&2; exit 1; }
	start-sdk pack

## Check the .s9pk as the marketplace does (icon size, image tags, manifest rules).
verify: $(PKG_ID).s9pk
	start-sdk verify s9pk $(PKG_ID).s9pk

## Remove package outputs (the image cache under /var/tmp/keysmith-image-cache is kept).
clean:
	rm -rf docker-images $(PKG_ID).s9pk
