# Developer entry points. `make run` and `make test` are the README's two commands.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: run test lint bench bench-peers bench-validate bench-scale soak fuzz venv actions-catalogue \
        migrations-history

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
	$(MAKE) startos-check javascript/index.js
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

## startos/actions.json: every action and its input form, declared once in daemon/actions; the
## StartOS 0.4 package builds its actions from it (tests/test_actions.py checks it is current).
actions-catalogue: startos/actions.json

startos/actions.json: $(VENV)/.installed $(wildcard daemon/actions/*.py) daemon/licensing/inputs.py \
                      daemon/licensing/service.py
	mkdir -p startos
	$(PY) -m daemon action --catalogue > $@

## migrations/history.lock: every text each migration had in a commit (daemon/migrate/history.py
## says which commits count); tests/test_migrate_history.py fails when it is stale.
migrations-history: venv
	$(PY) -m daemon.migrate.history generate migrations

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
	$(PY) -m tests.crash_harness --mode webhook --kills 50

## The property tests with fresh random examples, ten times as many (`make test` draws the same
## examples on every run, so CI never fails on an input no earlier run tried).
fuzz: venv
	KEYSMITH_HYPOTHESIS_PROFILE=explore KEYSMITH_FUZZ_EXAMPLES=1000 $(PY) -m pytest -q \
	    tests/test_api_fuzz.py tests/test_api_consistency.py tests/test_keys.py \
	    tests/test_migrate_drift.py

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

# ---- The StartOS 0.4 package: startos/ (TypeScript, start-sdk 2.0.9) -------------------------
# npm and node 18+ are needed; start-cli only for `make s9pk` (see scripts/README.md).
STARTOS_SOURCES := $(shell find startos -type f 2>/dev/null) package.json tsconfig.json

.PHONY: startos-deps startos-check s9pk

## node_modules/ exactly as package-lock.json pins it.
startos-deps: node_modules/.package-lock.json

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

## Type-check the package and run the SDK's own lint gate.
startos-check: startos-deps
	npx tsc --noEmit
	node node_modules/@start9labs/start-sdk/lint.mjs

## The bundle start-cli packs (and the tests run in node).
javascript/index.js: node_modules/.package-lock.json $(STARTOS_SOURCES)
	npx ncc build startos/index.ts -o javascript

## keysmith_v2.s9pk (s9pk v2, for StartOS 0.4) from the bundle, the Dockerfile and the assets;
## named apart from the 0.3.5 package's keysmith.s9pk (`make pack`).
s9pk: startos-check javascript/index.js
	@command -v start-cli >/dev/null 2>&1 || { \
	  echo "make s9pk: start-cli is not installed (it is not on PyPI, npm or Debian);" >&2; \
	  echo "  install it from Start9's apt repository or build it from Start9Labs/start-os;" >&2; \
	  echo "  see scripts/README.md, section 'StartOS 0.4 (s9pk v2)'." >&2; exit 1; }
	start-cli s9pk pack -o $(PKG_ID)_v2.s9pk
