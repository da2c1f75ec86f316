# The two commands a fresh machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DOCS_UI := ingress/docs_ui

.PHONY: run test web docs-ui bench bench-terminal migrate lint clean

run: $(VENV)/.installed $(DOCS_UI)/node_modules/.installed web
	@scripts/system-deps.sh
	$(BIN)/python -m ingress

# Modules run on TEST_WORKERS processes side by side (each module on one, with its own platform).
TEST_WORKERS ?= 2

test: $(VENV)/.installed $(DOCS_UI)/node_modules/.installed web
	@scripts/system-deps.sh --test
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# The web IDE (web/): npm ci when the lockfile changed, a Vite build when a source did.
WEB_SOURCES := $(shell find web/src web/e2e -type f 2>/dev/null) web/index.html \
	web/tsconfig.json web/vite.config.ts web/vite.e2e.config.ts

web: web/dist/index.html

web/node_modules/.installed: web/package.json web/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "npm is needed to build the IDE: install Node.js 20.19 or newer" >&2; exit 1; }
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

web/dist/index.html: web/node_modules/.installed $(WEB_SOURCES)
	cd web && npm run --silent build
	touch $@

bench: $(VENV)/.installed
	$(BIN)/python -m bench.http

bench-terminal: $(VENV)/.installed
	@scripts/system-deps.sh
	$(BIN)/python -m bench.terminal

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
	rm -rf $(VENV) .pytest_cache $(DOCS_UI)/node_modules web/node_modules web/dist web/dist-e2e
