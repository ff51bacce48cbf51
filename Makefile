# Two commands for a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# More than one needs Redis (REDIS_URL), which the workers share: README, "Scale-out".
WORKERS ?= 1
DEMO_PORT ?= 8001
export DEMO_PORT

.PHONY: run test lint chromium

include bench/Makefile.inc

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt bench/requirements.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# Serves the app with daphne, beside the built-in demo upstream.
run: $(VENV)/.runtime
	$(PY) manage.py migrate --noinput
	$(PY) manage.py ensure_login
	@$(PY) -m chat.simulator --port $(DEMO_PORT) & sim=$$!; trap 'kill $$sim' EXIT INT TERM; \
	echo "Open http://$(HOST):$(PORT)/"; \
	$(PY) -m chat.serve --workers $(WORKERS) -b $(HOST) -p $(PORT) chatsite.asgi:application

# The browser tests drive Debian's Chromium; install it where it is missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "Installing Chromium from Debian's packages for the browser tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }

test: $(VENV)/.dev chromium
	$(PY) -m pytest

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
