# Two commands matter: `make run` and `make test`. Each sets up what it needs on a fresh machine.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed

# With nothing set the service runs in production mode (debug off, DJANGO_SECRET_KEY required): `make run`
# and `make bench` turn development mode on explicitly (`make run DJANGO_DEBUG=false` to try production
# mode locally); the tests do it in tests/settings.py.
STATIC_ROOT ?= staticfiles
STATIC_MANIFEST := $(STATIC_ROOT)/staticfiles.json

# PostgreSQL for the second test run: TEST_DATABASE_URL, or the local server when it answers.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/staging

.PHONY: run test test-sqlite test-postgres lint bench browser clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(RUNTIME_STAMP): requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@ $(RUNTIME_STAMP)

# The admin's and the API docs' static files, collected again when the installed packages change, so that
# the admin looks right with debug off too (WhiteNoise serves STATIC_ROOT).
$(STATIC_MANIFEST): $(RUNTIME_STAMP)
	$(PY) manage.py collectstatic --no-input --verbosity 0
	touch $@

run: export DJANGO_DEBUG ?= true
run: $(RUNTIME_STAMP) $(STATIC_MANIFEST)
	$(PY) manage.py migrate --no-input
	$(PY) manage.py bootstrap
	$(PY) manage.py serve

# The admin's real-browser tests drive Debian's Chromium (browser downloads do not work here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "Installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: test-sqlite test-postgres

test-sqlite: $(DEV_STAMP) browser
	@echo "== tests on SQLite =="
	env -u DATABASE_URL $(PY) -m pytest

test-postgres: $(DEV_STAMP) browser
	@if $(PY) -c "import socket, sys, urllib.parse as u; p = u.urlsplit('$(TEST_DATABASE_URL)'); \
		socket.create_connection((p.hostname or '127.0.0.1', p.port or 5432), timeout=3).close()" 2>/dev/null; then \
		echo "== tests on PostgreSQL =="; \
		DATABASE_URL='$(TEST_DATABASE_URL)' $(PY) -m pytest; \
	else \
		echo "== PostgreSQL not reachable at TEST_DATABASE_URL: skipped the PostgreSQL run =="; \
	fi

lint: $(DEV_STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: export DJANGO_DEBUG ?= true
bench: $(DEV_STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) test_db*.sqlite3 .pytest_cache .ruff_cache
