# agency-cron: the seed's make targets. `make setup-cronjobs` on a fresh machine installs
# everything (the virtualenv, cron and logrotate when missing, the tasks of tasks.yaml).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= $(firstword $(wildcard config.env) config.env.example)
MANIFEST ?= tasks.yaml
AGENCY_CRON := $(BIN)/agency-cron --config $(CONFIG) --manifest $(MANIFEST)
STAMP := $(VENV)/.installed

.PHONY: setup-cronjobs setup-log-rotation list log-summary health-check verify-backup \
        dashboard-update system-deps test-deps need venv test lint format clean

## Install the scheduled tasks of tasks.yaml (idempotent: run it again any time)
setup-cronjobs: system-deps $(STAMP)
	$(AGENCY_CRON) install

## Log folders and the logrotate config; install renders them together with the wrappers,
## so this is the same idempotent install (it changes nothing that is already right).
setup-log-rotation: system-deps $(STAMP)
	$(AGENCY_CRON) install

list: $(STAMP)
	$(AGENCY_CRON) list

log-summary: $(STAMP)
	$(AGENCY_CRON) log-summary

health-check: $(STAMP)
	$(AGENCY_CRON) run health-check

verify-backup: $(STAMP)
	$(AGENCY_CRON) run backup-verify

dashboard-update: $(STAMP)
	$(AGENCY_CRON) run dashboard-update

# cron and logrotate: installed with apt-get when run as root, else say what to install.
# The tests also need systemd-analyze (systemd) and a browser (chromium).
system-deps:
	@$(MAKE) --no-print-directory need PACKAGES="crontab:cron logrotate:logrotate"

test-deps:
	@$(MAKE) --no-print-directory need PACKAGES="crontab:cron cron:cron logrotate:logrotate systemd-analyze:systemd chromium:chromium sqlite3:sqlite3"

need:
	@missing=""; PATH="$$PATH:/usr/sbin:/sbin"; \
	for pair in $(PACKAGES); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "missing:$$missing -- install them first: sudo apt-get install$$missing" >&2; exit 1; \
	  fi; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the package's sources change; a plain (non-editable) install, as in production.
$(STAMP): $(BIN)/python pyproject.toml $(shell find agency_cron templates scripts/cronjobs -type f 2>/dev/null)
	$(BIN)/pip install --quiet --upgrade pip >/dev/null
	$(BIN)/pip install --quiet '.[test]'
	touch $@

venv: $(STAMP)

## The test suite (unit, integration on the real crontab/logrotate, e2e with the cron daemon)
test: test-deps $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## Type check, as configured in pyproject.toml's [tool.mypy]
.PHONY: typecheck
typecheck: $(STAMP)
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
