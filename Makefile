# agency-cron: the seed's make targets. `make setup-cronjobs` on a fresh machine installs
# everything: cron and logrotate when missing, agency-cron itself in AGENCY_ROOT/venv, the
# config and manifest under AGENCY_ROOT, the tasks of tasks.yaml. The installation does not
# depend on this checkout; the tests use their own environment, .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# What set-up installs: config.env when present, else config.env.example; tasks.yaml.
CONFIG ?= $(firstword $(wildcard config.env) config.env.example)
MANIFEST ?= tasks.yaml
# AGENCY_ROOT before any config is read: the environment, else the value CONFIG gives it,
# else the default.
ifeq ($(strip $(AGENCY_ROOT)),)
AGENCY_ROOT := $(or $(shell sed -nE 's/^[[:space:]]*(export[[:space:]]+)?AGENCY_ROOT[[:space:]]*=[[:space:]]*["'\'']?([^"'\''\#[:space:]]*).*/\2/p' $(CONFIG) 2>/dev/null | tail -n 1),/opt/agency_stack)
endif
DEFAULT_ROOT := /opt/agency_stack
# The runtime environment: agency-cron and its runtime dependencies, nothing of the tests.
RUNTIME := $(AGENCY_ROOT)/venv
RUNTIME_STAMP := $(RUNTIME)/.agency-cron-sources
# The package's sources, as the stamps see them (never the bytecode a run leaves behind).
SOURCES := pyproject.toml $(shell find agency_cron templates scripts/cronjobs -type f \
          -not -name '*.pyc' -not -path '*/__pycache__/*' 2>/dev/null | LC_ALL=C sort)
# Every target after set-up uses what set-up installed, unless the environment names others.
AGENCY_CRON := AGENCY_CRON_CONFIG=$(or $(AGENCY_CRON_CONFIG),$(AGENCY_ROOT)/config.env) \
	AGENCY_CRON_MANIFEST=$(or $(AGENCY_CRON_MANIFEST),$(AGENCY_ROOT)/tasks.yaml) \
	$(RUNTIME)/bin/agency-cron
# As root with the default root, `agency-cron` on the PATH is the installed one.
LINK := $(if $(and $(filter 0,$(shell id -u)),$(filter $(DEFAULT_ROOT),$(AGENCY_ROOT))),\
	--link /usr/local/bin/agency-cron)

.PHONY: setup-cronjobs setup-log-rotation runtime installed list log-summary health-check \
        verify-backup dashboard-update system-deps test-deps need venv test lint format clean

## Install the scheduled tasks of tasks.yaml (idempotent: run it again any time)
setup-cronjobs: system-deps runtime
	@$(RUNTIME)/bin/python -m agency_cron.installation --root $(AGENCY_ROOT) \
	  --config $(CONFIG) --manifest $(MANIFEST) $(LINK)
	@$(AGENCY_CRON) install

## Log folders and the logrotate config; install renders them together with the wrappers,
## so this is the same idempotent set-up (it changes nothing that is already right).
setup-log-rotation: setup-cronjobs

# agency-cron in AGENCY_ROOT/venv: a plain (non-editable) install of this checkout with its
# runtime dependencies. Redone only when the sources or the interpreter changed (the stamp
# holds their digest); pip's output goes to $(RUNTIME)/pip.log. The venv gets no pip of its
# own when $(PYTHON)'s pip can install into it (`pip --python`, pip >= 22.3): seconds less
# on every cold set-up. The bytecode is compiled on both cores, once, at install.
runtime:
	@version=$$($(PYTHON) -c 'import sys; print(sys.version)'); \
	digest=$$( { echo "$$version"; sha256sum $(SOURCES); } | sha256sum | cut -c1-64); \
	[ -x $(RUNTIME)/bin/python ] && [ "$$(cat $(RUNTIME_STAMP) 2>/dev/null)" = "$$digest" ] && exit 0; \
	echo "installing agency-cron into $(RUNTIME) (log: $(RUNTIME)/pip.log)"; \
	if [ "$$($(RUNTIME)/bin/python -c 'import sys; print(sys.version)' 2>/dev/null)" != "$$version" ]; then \
	  $(PYTHON) -m venv --clear --without-pip $(RUNTIME) || exit 1; \
	fi; \
	pip="$(PYTHON) -m pip --python $(RUNTIME)/bin/python"; \
	if ! $$pip --version >/dev/null 2>&1; then \
	  $(RUNTIME)/bin/python -m ensurepip --default-pip >/dev/null 2>&1 \
	    || { echo "no pip for $(RUNTIME): apt-get install python3-venv" >&2; exit 1; }; \
	  pip="$(RUNTIME)/bin/python -m pip"; \
	fi; \
	$$pip install --no-compile . > $(RUNTIME)/pip.log 2>&1 \
	  && $(RUNTIME)/bin/python -m compileall -q -j 0 $(RUNTIME)/lib >> $(RUNTIME)/pip.log 2>&1 \
	  || { tail -n 20 $(RUNTIME)/pip.log >&2; exit 1; }; \
	echo "$$digest" > $(RUNTIME_STAMP)

# The targets below use the installation: make setup-cronjobs first.
installed:
	@[ -x $(RUNTIME)/bin/agency-cron ] || { \
	  echo "agency-cron is not installed in $(RUNTIME): run make setup-cronjobs first" >&2; exit 2; }

list: installed
	$(AGENCY_CRON) list

log-summary: installed
	$(AGENCY_CRON) log-summary

health-check: installed
	$(AGENCY_CRON) run health-check

verify-backup: installed
	$(AGENCY_CRON) run backup-verify

dashboard-update: installed
	$(AGENCY_CRON) run dashboard-update

# cron and logrotate: installed with apt-get when run as root, else say what to install.
# The tests also need systemd-analyze (systemd), a browser (chromium), git (to clone),
# faketime, an MTA (msmtp-mta), Prometheus with node_exporter, chronic for the benches, and
# PostgreSQL's server (postgresql: initdb, postgres and psql, which Debian keeps off the PATH
# in /usr/lib/postgresql/VERSION/bin, hence its own check).
# A policy-rc.d that refuses keeps the packages' own services from starting on install.
system-deps:
	@$(MAKE) --no-print-directory need PACKAGES="crontab:cron logrotate:logrotate"

test-deps:
	@$(MAKE) --no-print-directory need PACKAGES="crontab:cron cron:cron logrotate:logrotate systemd-analyze:systemd chromium:chromium sqlite3:sqlite3 git:git faketime:faketime msmtp:msmtp-mta \
	  promtool:prometheus prometheus-node-exporter:prometheus-node-exporter chronic:moreutils \
	  openssl:openssl curl:curl"
	@ls /usr/lib/postgresql/*/bin/initdb /usr/lib/postgresql/*/bin/psql >/dev/null 2>&1 \
	  || $(MAKE) --no-print-directory need PACKAGES="initdb:postgresql"

need:
	@missing=""; PATH="$$PATH:/usr/sbin:/sbin"; \
	for pair in $(PACKAGES); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing:$$missing"; \
	    made=""; [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
	      chmod 755 /usr/sbin/policy-rc.d; made=1; }; \
	    rc=0; { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends $$missing; } || rc=$$?; \
	    [ -z "$$made" ] || rm -f /usr/sbin/policy-rc.d; [ $$rc = 0 ] || exit $$rc; \
	  else \
	    echo "missing:$$missing -- install them first: sudo apt-get install$$missing" >&2; exit 1; \
	  fi; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the package's sources change; a plain (non-editable) install, as in production.
$(STAMP): $(BIN)/python $(SOURCES)
	$(BIN)/pip install --quiet --upgrade pip >/dev/null
	$(BIN)/pip install --quiet '.[test]'
	touch $@

venv: $(STAMP)

## The test suite (unit, integration on the real crontab/logrotate, e2e with the cron daemon)
# No bytecode in the checkout: it would only be noise (the tests import the installed copy).
test: test-deps $(STAMP)
	PYTHONDONTWRITEBYTECODE=1 $(BIN)/pytest

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
