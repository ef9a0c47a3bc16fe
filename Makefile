# Developer entry points. `make run` and `make test` are the README's two commands; plain `make`
# builds the StartOS package (keysmith_<arch>.s9pk), as Start9's build workflow expects.
# Debian bookworm's python3, the interpreter the image runs (Dockerfile), not whichever python3
# comes first on PATH (a pyenv build on the CI machines): the tests and benchmarks then measure
# the interpreter that ships, built with Debian's optimizations (its Python code runs ~25% faster
# there than on the pyenv build, bench/RESULTS.md).
PYTHON ?= $(firstword $(wildcard /usr/bin/python3) python3)
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
## Two workers (pytest-xdist) for all but the image tests: most tests wait on a daemon, so two
## cores run two of them, a file per worker at a time (a module's fixtures, e.g. a fresh clone
## built with npm, are made once). Beside them, from the start, a third pytest runs the image
## tests one at a time (they mostly wait on podman), its report printed after the others'.
## One at a time because two builds of the Dockerfile at once on a fresh machine cache two
## different chains of layers, and a variant built next may take the other chain (test_image's
## layer check then fails); scripts/build-image.sh also takes a lock for it. (xdist_group does
## not keep them together: with pytest 9, xdist 3.8's loadgroup no longer changes the node ids.)
TEST_WORKERS ?= -n 2 --dist loadfile
test: venv
	bash tests/system-deps.sh
	$(MAKE) javascript/index.js  # its recipe runs startos-check's tsc and lint first
	$(PY) -m ruff check .
	@log="$$(mktemp)"; \
	echo "$(PY) -m pytest -m image > $$log (beside the others)"; \
	$(PY) -m pytest -m image >"$$log" 2>&1 & image=$$!; \
	echo "$(PY) -m pytest $(TEST_WORKERS) -m \"not image\""; \
	$(PY) -m pytest $(TEST_WORKERS) -m "not image"; rest=$$?; \
	wait $$image; images=$$?; \
	echo "---- the image tests ($(PY) -m pytest -m image) ----"; cat "$$log"; rm -f "$$log"; \
	[ $$rest -eq 0 ] && [ $$images -eq 0 ]

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

# ---- The StartOS 0.4 package: the SDK's s9pk.mk convention ----------------------------------
# Every target and variable of node_modules/@start9labs/start-sdk/s9pk.mk (tests/test_s9pk.py
# checks the list against the SDK's file). It is not included from there: it exists only after
# `npm ci` (so `make run` would first need npm), and its pack recipe needs start-cli, which this
# project's CI cannot install. `make` packs with start-cli when it is on PATH, and otherwise with
# scripts/s9pk/ (the same file, written from the format's definition; see scripts/README.md).
.DEFAULT_GOAL := all

PACKAGE_ID := $(shell awk -F"'" '/id:/ {print $$2}' startos/manifest/index.ts)
INGREDIENTS := $(shell start-cli s9pk list-ingredients 2>/dev/null)
GIT_DIR := $(shell git rev-parse --git-dir 2>/dev/null)
# Rebuild triggers (the manifest carries the commit hash), not requirements.
GIT_DEPS := $(if $(GIT_DIR),$(wildcard $(GIT_DIR)/HEAD $(GIT_DIR)/index))
# Only the architectures CI builds and boots (see scripts/README.md, "aarch64").
ARCHES ?= x86
TARGETS ?= $(ARCHES)
ifdef VARIANT
BASE_NAME := $(PACKAGE_ID)_$(VARIANT)
else
BASE_NAME := $(PACKAGE_ID)
endif
# What the package is made of when start-cli is not there to list it: the image's build context,
# the bundle, the root files pack takes, assets/, and the writer itself.
IMAGE_INPUTS := Dockerfile .dockerignore requirements.lock scripts/docker_entrypoint.sh \
                $(shell find daemon migrations -type f ! -path '*/__pycache__/*' ! -name '*.pyc')
S9PK_INPUTS := javascript/index.js icon.png LICENSE instructions.md assets $(wildcard assets/*) \
               $(IMAGE_INPUTS) $(wildcard scripts/s9pk/*)
S9PK_INSPECT := node scripts/s9pk/inspect.mjs

.PHONY: all arches aarch64 x86_64 riscv64 arm arm64 x86 riscv arch/* clean install check-deps \
        check-init package ingredients universal publish inspect
.SECONDARY:

# The file's name, size, title, version, architectures, SDK and commit, read back through
# StartOS's own reader (start-cli's `s9pk inspect` is not needed for it).
define SUMMARY
	@manifest=$$($(S9PK_INSPECT) $(1) --manifest) || exit 1; \
	field() { printf '%s' "$$manifest" | node -e "const m = JSON.parse(require('fs').readFileSync(0)); console.log($$1)"; }; \
	printf '\n\033[1;32mBuild complete\033[0m: %s (%s)\n' "$(1)" "$$(du -h $(1) | cut -f1)"; \
	printf '  %s v%s, arch %s, SDK %s, git %s\n\n' "$$(field m.title)" "$$(field m.version)" \
	  "$$(field "[...new Set(Object.values(m.images).flatMap(i => i.arch))].join(', ')")" \
	  "$$(field m.sdkVersion)" "$$(field m.gitHash)"
endef

all: $(TARGETS)

arches: $(ARCHES)

## `make -s print-TARGETS` prints the build matrix (Start9's release workflow reads it).
print-%:
	@echo '$($*)'

universal: $(BASE_NAME).s9pk
	$(call SUMMARY,$<)

arch/%: $(BASE_NAME)_%.s9pk
	$(call SUMMARY,$<)

x86 x86_64: arch/x86_64
arm arm64 aarch64: arch/aarch64
riscv riscv64: arch/riscv64

$(BASE_NAME).s9pk: $(INGREDIENTS) $(S9PK_INPUTS) $(GIT_DEPS)
	@command -v start-cli >/dev/null 2>&1 || { \
	  echo "make universal: packing every architecture in one file needs start-cli (see" \
	       "scripts/README.md); without it, build one per architecture: make x86" >&2; exit 1; }
	@echo "   Packing '$@'..."
	start-cli s9pk pack -o $@

$(BASE_NAME)_%.s9pk: $(INGREDIENTS) $(S9PK_INPUTS) $(GIT_DEPS)
	@echo "   Packing '$@'..."
	@if command -v start-cli >/dev/null 2>&1; then \
	  start-cli s9pk pack --arch=$* -o $@; \
	else \
	  echo "   (start-cli is not installed: packing with scripts/s9pk/)"; \
	  bash scripts/s9pk/build.sh $* $@; \
	fi

ingredients: $(INGREDIENTS)
	@echo "   Re-evaluating ingredients..."

## Read the package(s) back through StartOS's reader and print the table of contents.
inspect:
	@for f in $(wildcard $(BASE_NAME)*.s9pk); do $(S9PK_INSPECT) $$f || exit 1; done

install: | check-deps check-init
	@if [ -z "$$(ls *.s9pk 2>/dev/null)" ]; then \
		echo "Error: No .s9pk file found. Run 'make' first."; \
		exit 1; \
	fi; \
	S9PK=$$(start-cli s9pk select) || exit 1; \
	printf "\n🚀 Installing %s ...\n" "$$S9PK"; \
	start-cli package install -s "$$S9PK"

publish: | all
	@python3 scripts/publish_urls.py --check || \
		(echo "Error: the package's public addresses are placeholders; set them in startos/publish.json." && exit 1)
	@command -v s3cmd >/dev/null || \
		(echo "Error: s3cmd not found. It must be installed to publish using s3." && exit 1); \
	printf "\n🚀 Publishing ...\n"; \
	for s9pk in *.s9pk; do \
		age=$$(( $$(date +%s) - $$(stat -c %Y "$$s9pk") )); \
		if [ "$$age" -gt 3600 ]; then \
			printf "\033[1;33m⚠️  %s is %d minutes old. Publish anyway? [y/N] \033[0m" "$$s9pk" "$$((age / 60))"; \
			read -r ans; \
			case "$$ans" in [yY]*) ;; *) echo "Skipping $$s9pk"; continue ;; esac; \
		fi; \
		start-cli s9pk publish "$$s9pk"; \
	done

check-deps:
	@command -v start-cli >/dev/null || \
		(echo "Error: start-cli not found. See scripts/README.md or https://docs.start9.com/packaging/environment-setup.html" && exit 1)
	@command -v npm >/dev/null || \
		(echo "Error: npm not found. Install Node.js and npm." && exit 1)

## start-cli's developer key, as the SDK's install checks (packages themselves are signed with
## the workspace's build key: start-cli s9pk init-workspace, see scripts/README.md).
check-init:
	@if [ ! -f ~/.startos/developer.key.pem ]; then \
		echo "Initializing StartOS developer environment..."; \
		start-cli init-key; \
	fi

package: all

clean:
	@echo "Cleaning up build artifacts..."
	@rm -rf $(PACKAGE_ID).s9pk $(PACKAGE_ID)_x86_64.s9pk $(PACKAGE_ID)_aarch64.s9pk \
	  $(PACKAGE_ID)_riscv64.s9pk *.s9pk.partial javascript node_modules docker-images \
	  $(LEGACY_ID)_legacy.s9pk

# ---- The StartOS 0.4 package's TypeScript: startos/ (start-sdk 2.0.9) -------------------------
# npm and node 18+ are needed.
STARTOS_SOURCES := $(shell find startos -type f 2>/dev/null) package.json tsconfig.json

.PHONY: startos-deps startos-check

## node_modules/ exactly as package-lock.json pins it.
startos-deps: node_modules/.package-lock.json
node_modules: node_modules/.package-lock.json

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

## Type-check the package and run the SDK's own lint gate.
startos-check: startos-deps
	npx tsc --noEmit
	node node_modules/@start9labs/start-sdk/lint.mjs

## The bundle the package carries (and the tests run in node): checked first, as the SDK's
## s9pk.mk does, then bundled with ncc.
javascript/index.js: node_modules/.package-lock.json $(STARTOS_SOURCES)
	npm run --silent check
	npx ncc build startos/index.ts -o javascript

# ---- The image, and the StartOS 0.3.5 package (legacy-*) -------------------------------------
# `make image` needs either a Docker engine (docker buildx) or, without one, buildah + podman +
# debootstrap + runc as root (the base image is then made locally; see scripts/README.md).
# `make legacy-pack` / `legacy-verify` need start-sdk 0.3.5. Outputs: docker-images/*.tar,
# keysmith_legacy.s9pk (s9pk v1, for StartOS 0.3.5).
LEGACY_ID      := $(shell sed -n 's/^id: *//p' manifest.yaml)
LEGACY_VERSION := $(shell sed -n 's/^version: *"\(.*\)"/\1/p' manifest.yaml)
IMAGE_TAG      := start9/$(LEGACY_ID)/main:$(LEGACY_VERSION)
LEGACY_ARCHES  ?= x86_64 aarch64

.PHONY: image legacy-x86 legacy-arm legacy-pack legacy-verify
# A half-written tarball or .s9pk must never look finished.
.DELETE_ON_ERROR:

## Build start9/keysmith/main:<version> for this machine's architecture.
image:
	bash scripts/build-image.sh $(IMAGE_TAG)

## docker-images/x86_64.tar and docker-images/aarch64.tar, as start-sdk pack expects them.
legacy-x86: docker-images/x86_64.tar
legacy-arm: docker-images/aarch64.tar

docker-images/x86_64.tar: $(IMAGE_INPUTS)
	bash scripts/build-image.sh --platform linux/amd64 --output $@ $(IMAGE_TAG)

docker-images/aarch64.tar: $(IMAGE_INPUTS)
	bash scripts/build-image.sh --platform linux/arm64 --output $@ $(IMAGE_TAG)

## keysmith_legacy.s9pk from manifest.yaml, the assets and the image tarballs
## (LEGACY_ARCHES=x86_64 for one arch). start-sdk writes keysmith.s9pk; it is renamed so it is
## never taken for the 0.4 package.
legacy-pack: $(LEGACY_ID)_legacy.s9pk

$(LEGACY_ID)_legacy.s9pk: manifest.yaml LICENSE icon.png instructions.md \
                          $(LEGACY_ARCHES:%=docker-images/%.tar)
	@command -v start-sdk >/dev/null 2>&1 || { \
	  echo "make legacy-pack: start-sdk is not installed; see scripts/README.md" >&2; exit 1; }
	start-sdk pack
	mv $(LEGACY_ID).s9pk $@

## Check the 0.3.5 .s9pk as its marketplace does (icon size, image tags, manifest rules).
legacy-verify: $(LEGACY_ID)_legacy.s9pk
	start-sdk verify s9pk $<
