# Nightshift: `make run` starts it, `make test` checks everything. Both work on a fresh clone.
VENV ?= .venv
PYTHON ?= python3
PG_TEST_URL ?= postgresql://127.0.0.1:5432/test

.PHONY: run test lint unit bench clean descriptions

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

# GitHub's published API descriptions, the judge of the contract tests (tests/contract):
# the npm packages pinned in tests/contract/package.json (and its lock), installed once.
DESCRIPTIONS := tests/contract/node_modules/.installed
$(DESCRIPTIONS): tests/contract/package.json tests/contract/package-lock.json
	npm ci --prefix tests/contract --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

descriptions: $(DESCRIPTIONS)

# A development .env: a fresh webhook secret, and dry-run until App credentials are set.
.env:
	umask 077 && $(PYTHON) -c "import secrets; print('NIGHTSHIFT_WEBHOOK_SECRET=' + secrets.token_hex(20)); print('NIGHTSHIFT_DRY_RUN=true')" > .env
	@echo "wrote .env (mode 0600) with a new webhook secret, dry-run on; to act on GitHub add NIGHTSHIFT_APP_ID and NIGHTSHIFT_PRIVATE_KEY_PATH and set NIGHTSHIFT_DRY_RUN=false (README: Settings)"

run: $(VENV)/.installed .env
	$(VENV)/bin/nightshift serve

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check app tests
	$(VENV)/bin/ruff format --check app tests
	$(VENV)/bin/mypy

# The suite on SQLite, then again on the PostgreSQL server (a fresh database per test).
unit: $(VENV)/.installed $(DESCRIPTIONS)
	$(VENV)/bin/pytest
	NIGHTSHIFT_TEST_DATABASE_URL=$(PG_TEST_URL) $(VENV)/bin/pytest

test: lint unit

bench: $(VENV)/.installed
	$(VENV)/bin/python bench/ingest.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache tests/contract/node_modules
