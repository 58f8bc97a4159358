# Bastion — the commands a developer needs. Everything installs into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
BASTION_HOST ?= 127.0.0.1
BASTION_PORT ?= 8080
export BASTION_HOST BASTION_PORT

.PHONY: chromium run test bench lint install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# The OpenID provider the federation tests sign in at (Node.js, tests/idp). Without npm those
# tests are skipped, and fail under CI; a changed lock file installs again.
tests/idp/node_modules: tests/idp/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tests/idp --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: the federation tests (tests/oauth/test_federation.py) will be skipped"; fi

# Debian's Chromium for the console's browser tests (tests/console/test_browser_walk.py), where missing.
# Without it those tests are skipped, and fail under CI.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		($$SUDO apt-get install -y -q chromium || ($$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium)) \
			>/dev/null 2>&1 || echo "Chromium could not be installed: the browser tests will be skipped"; }

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test tests/idp/node_modules chromium

## make run: migrate ./var/bastion.db, bootstrap the demo once, serve on $(BASTION_HOST):$(BASTION_PORT)
## The vault's master key file for the local demo is ./var/master-keys.json (created on first start).
run: export BASTION_MASTER_KEY_FILE ?= $(CURDIR)/var/master-keys.json
run: export BASTION_ADMIN_UI ?= true
run: install
	$(BIN)/bastion demo

## make test: install test dependencies and run the whole suite
test: install-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src/bastion tests bench
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

## make bench: direct vs through-Bastion tools/call at concurrency 1 and 32
bench: install-test
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) var build *.egg-info
