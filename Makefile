# One command for the demo, one for the tests; everything else is a step of theirs.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# Local runs use the development defaults (see README, Configuration).
export SCRM_DEVELOPMENT ?= 1

.DEFAULT_GOAL := help
.PHONY: help setup db demo test lint worker beat browser clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# Front-end libraries from the npm registry, exact versions in frontend/package-lock.json,
# installed into build/npm and copied into static/vendor/ (ignored by git). Skipped while
# the copied file is newer than the lock.
NPM_DIR := build/npm
VENDOR := static/vendor
$(VENDOR)/echarts.min.js: frontend/package.json frontend/package-lock.json
	mkdir -p $(NPM_DIR) $(VENDOR)
	cp frontend/package.json frontend/package-lock.json $(NPM_DIR)/
	npm ci --prefix $(NPM_DIR) --no-audit --no-fund --ignore-scripts --loglevel=error
	cp $(NPM_DIR)/node_modules/echarts/dist/echarts.min.js $@

setup: $(VENV)/.installed $(VENDOR)/echarts.min.js ## Create .venv, install pinned deps and front-end libraries, create and migrate the database
	$(PY) -m scrm.ensure_database
	$(PY) manage.py migrate --noinput -v 0
	$(PY) manage.py compilemessages --ignore=.venv -v 0
	$(PY) manage.py collectstatic --noinput -v 0

demo: setup ## Set up, load demo data and run web + two workers + beat (Ctrl-C stops all)
	$(PY) manage.py rundemo

browser: ## Install Debian's Chromium and a CJK font for the browser tests when missing
	@command -v chromium >/dev/null && fc-list :lang=zh | grep -q . || \
	  (apt-get install -y -q chromium fonts-noto-cjk || (apt-get update -q && apt-get install -y -q chromium fonts-noto-cjk))

test: setup browser ## Set up and run the whole suite (real PostgreSQL, Redis, Celery worker)
	DJANGO_SETTINGS_MODULE=scrm.settings_test $(PY) -m scrm.ensure_database
	# A new test database every run: one left by another checkout may predate a migration's edit.
	$(PY) -m pytest --create-db

lint: $(VENV)/.installed ## Ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

worker: $(VENV)/.installed ## Run a Celery worker on every queue
	$(PY) -m celery -A scrm worker -Q default,sync,tagging,sop,messages,analytics --loglevel INFO

beat: $(VENV)/.installed ## Run Celery beat
	$(PY) -m celery -A scrm beat --loglevel INFO

clean: ## Remove build output (keeps .venv and the database)
	rm -rf build
