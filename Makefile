# The two commands of the README: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501

.PHONY: run test setup check lint screenshots clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit("Memberdesk needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

setup: $(VENV)/.installed

## Set up, migrate, create demo data on first start, start the Stripe sandbox and the dashboard.
run: setup
	$(PY) -m core run --port $(PORT)

## Set up and run the whole suite (SQLite always; PostgreSQL too when TEST_DATABASE_URL is set).
test: setup
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check core dashboard pages tests bench

check: lint test

## Refresh the page screenshots under docs/screenshots/ (needs Debian's chromium).
screenshots: setup
	$(PY) -m bench.screenshots

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
