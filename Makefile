# The two commands a fresh machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench bench-terminal migrate lint clean

run: $(VENV)/.installed
	@scripts/system-deps.sh
	$(BIN)/python -m ingress

test: $(VENV)/.installed
	@scripts/system-deps.sh --test
	$(BIN)/python -m pytest

bench: $(VENV)/.installed
	$(BIN)/python bench/http.py

bench-terminal: $(VENV)/.installed
	@scripts/system-deps.sh
	$(BIN)/python bench/terminal.py

migrate: $(VENV)/.installed
	$(BIN)/python -m shared.migrate

lint: $(VENV)/.installed
	$(BIN)/ruff check .

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache
