# The two commands in the README: `make demo` and `make test`.
# Each creates the virtual environment and installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dairy-edge demo

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check agent tests scripts

typecheck: $(STAMP)
	$(BIN)/mypy agent

pytest: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) build *.egg-info
