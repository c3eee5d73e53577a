# One-command entry points. `make app` and `make test` create .venv and install everything first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install app test test-slow test-all zoo lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev,timm,tensorboard]'
	touch $(STAMP)

app: install
	$(VENV)/bin/collab app

test: install
	$(PY) -m pytest -q -n 2 -m "not slow"

test-slow: install
	$(PY) -m pytest -q -n 2 -m slow

test-all: install
	$(PY) -m pytest -q -n 2

zoo: install
	$(VENV)/bin/collab zoo

# ruff (lint + formatting) and the layer contract of pyproject.toml's [tool.importlinter].
lint: install
	$(VENV)/bin/ruff check analysis app tests benchmarks notebooks
	$(VENV)/bin/ruff format --check analysis app tests benchmarks
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache
