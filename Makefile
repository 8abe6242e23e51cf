# One entry point: `make run` (embedded service + a first task), `make test` (the whole suite), `make bench`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-random test-faults fuzz lint bench docs migrate lock clean

# uv, pinned, in a venv of its own: `uv sync` removes from .venv whatever uv.lock does not hold. uv uses this
# machine's Python and never downloads one.
UV_VERSION := 0.13.9
UV_VENV := .venv-uv
UV := $(UV_VENV)/bin/uv
UV_STAMP := $(UV_VENV)/.installed-$(UV_VERSION)
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

$(UV_STAMP):
	test -x $(UV_VENV)/bin/python || $(PYTHON) -m venv $(UV_VENV)
	$(UV_VENV)/bin/pip install --quiet uv==$(UV_VERSION)
	touch $(UV_STAMP)

# Exactly uv.lock: the runtime dependencies, every extra but `gpu` (the bench extra too, so the benchmark smoke
# tests run in CI instead of skipping; `gpu` is the other ONNX Runtime build, which conflicts with `cpu`) and the
# Python client (clients/python, its own distribution, which the CLI depends on), both editable. --locked: stops,
# instead of installing a stale lock, when pyproject.toml changed since `make lock`.
$(STAMP): uv.lock pyproject.toml clients/python/pyproject.toml $(UV_STAMP)
	$(UV) sync --locked --all-extras --no-extra gpu || { echo 'if uv.lock is stale: `make lock`' >&2; exit 1; }
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/facequeue serve --demo

migrate: install
	$(BIN)/facequeue migrate

test: install
	$(BIN)/pytest -n 3

# The suite in a random order (modules shuffled, and tests within each), to show no test needs another to run
# first; the seed is printed at the top, and `RANDOM_ORDER_ARGS=--random-order-seed=N` replays it.
test-random: install
	$(BIN)/pytest -n 3 -p random_order --random-order $(RANDOM_ORDER_ARGS)

# Kills and restarts a private Postgres, Redis, API and worker; about 10 minutes.
test-faults: install
	$(BIN)/pytest -m faults tests/faults

# Schemathesis against a live API and worker, from its /openapi.json (tests/fuzz); 2 to 5 minutes.
fuzz: install
	$(BIN)/pytest -m fuzz tests/fuzz

lint: install
	$(UV) lock --check || { echo 'uv.lock does not match pyproject.toml: run `make lock`' >&2; exit 1; }
	$(IMAGE_LOCK_EXPORT) --extra cpu | diff -u deploy/requirements.lock - \
		|| { echo 'deploy/requirements.lock is not what uv.lock gives: run `make lock`' >&2; exit 1; }
	$(IMAGE_LOCK_EXPORT) --extra gpu | diff -u deploy/requirements-gpu.lock - \
		|| { echo 'deploy/requirements-gpu.lock is not what uv.lock gives: run `make lock`' >&2; exit 1; }
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

bench: install
	$(BIN)/python -m bench

# The documentation site (mkdocs.yml, docs/) into site/; --strict fails on any broken link or missing page.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# uv.lock, after a requirement in pyproject.toml changed; every other version stays as it was. To move versions
# on: `make lock LOCK_ARGS=--upgrade` (all) or `make lock LOCK_ARGS='--upgrade-package NAME'`.
# Then what the images install, from the same uv.lock: the runtime dependencies, one ONNX Runtime extra and the
# image group, with hashes, without the project and the client (the Dockerfiles install both from here):
# deploy/requirements.lock (cpu, deploy/Dockerfile) and deploy/requirements-gpu.lock (gpu, deploy/Dockerfile.gpu).
IMAGE_LOCK_EXPORT := $(UV) export --frozen --no-default-groups --group image --no-emit-project \
	--no-emit-package facequeue-client
lock: $(UV_STAMP)
	$(UV) lock $(LOCK_ARGS)
	$(IMAGE_LOCK_EXPORT) --extra cpu > deploy/requirements.lock
	$(IMAGE_LOCK_EXPORT) --extra gpu > deploy/requirements-gpu.lock

clean:
	rm -rf $(VENV) $(UV_VENV) .facequeue .pytest_cache
