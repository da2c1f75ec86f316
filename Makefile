# The two commands a fresh machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DOCS_UI := ingress/docs_ui

.PHONY: run test bench bench-terminal migrate lint clean docs-ui

run: $(VENV)/.installed $(DOCS_UI)/node_modules/.installed
	@scripts/system-deps.sh
	$(BIN)/python -m ingress

test: $(VENV)/.installed $(DOCS_UI)/node_modules/.installed
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

# The JavaScript and CSS of /docs and /redoc, exactly as the lockfile pins them (no install scripts).
docs-ui: $(DOCS_UI)/node_modules/.installed
$(DOCS_UI)/node_modules/.installed: $(DOCS_UI)/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js 18+ (apt-get install -y nodejs npm)" >&2; exit 1; }
	SCARF_ANALYTICS=false npm ci --prefix $(DOCS_UI) --ignore-scripts --omit=peer --no-audit --no-fund
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache $(DOCS_UI)/node_modules
