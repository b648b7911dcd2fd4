# The two commands of the README: `make run` and `make check`. Everything else is a helper.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
UV_PIN := uv==0.13.9
# INSTALLER=pip installs with pip even when uv could be used (for comparisons).
INSTALLER ?= auto

.PHONY: run test setup check lint types screenshots clean

# uv installs the same pinned requirements in a fraction of pip's time (docs/benchmarks.md): the uv
# on PATH, else one installed into the venv by pip (a single wheel); pip itself when neither works.
# --compile-bytecode: pip compiles at install, uv only when asked; without it every process
# compiles what it imports (and never keeps it where PYTHONDONTWRITEBYTECODE is set).
$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit("Memberdesk needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	@t0=$$(date +%s); \
	echo "installing the requirements into $(VENV) ..."; \
	$(PYTHON) -m venv $(VENV) || exit 1; \
	uv=$$(command -v uv || true); \
	if [ "$(INSTALLER)" = pip ]; then uv=""; \
	elif [ -z "$$uv" ] && $(PY) -m pip install --quiet $(UV_PIN) >/dev/null 2>&1; then uv=$(VENV)/bin/uv; fi; \
	if [ -n "$$uv" ] && "$$uv" pip install --quiet --compile-bytecode --python $(PY) -r requirements-dev.txt; then \
		how=uv; \
	else \
		how=pip; \
		$(PY) -m pip install --quiet --upgrade pip && $(PY) -m pip install --quiet -r requirements-dev.txt || exit 1; \
	fi; \
	echo "installing the requirements: done in $$(( $$(date +%s) - t0 )) s (with $$how)"
	@touch $@

setup: $(VENV)/.installed

## Set up, migrate, create demo data on first start, start the Stripe sandbox and the dashboard.
## PORT=... pins the dashboard's port, SANDBOX_PORT=... the sandbox's, DEMO_MEMBERS=... the demo size.
run: setup
	$(PY) -m cli run $(if $(PORT),--port $(PORT))

## Set up and run the whole suite (SQLite always; PostgreSQL too when TEST_DATABASE_URL is set).
test: setup
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check core cli demo stripe_sandbox dashboard pages tests bench

## mypy with the settings in pyproject.toml: strict on core/, default checks on the edges.
types: setup
	$(PY) -m mypy

## Set up and run lint, types and the whole suite (what CI runs).
check: lint types test

## Refresh the page screenshots under docs/screenshots/ (needs Debian's chromium).
screenshots: setup
	$(PY) -m bench.screenshots

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
