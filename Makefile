# crosscloud: every target installs what it needs on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
AZURITE_VERSION := 3.37.0
AZURITE := .tools/node/node_modules/.bin/azurite-blob
# Test tools that pin their own dependencies live in venvs of their own, never in .venv.
AWSCLI_VERSION := 1.46.3
AWSCLI := .venv-tools/awscli/bin/aws
UV_VERSION := 0.13.9
UV := .venv-tools/uv/bin/uv
# The suite again at the lowest versions the requirement files admit (`make test-floors`).
FLOORS := .venv-floors
FLOORS_STAMP := $(FLOORS)/.installed

.PHONY: help tools up down serve demo test test-floors test-unit lint checkov bench clean

help:
	@echo "make demo   - local cloud up, seed both clouds, backup, combined listing, down"
	@echo "make test   - lint, checkov (infra), unit + integration (devstack) + end-to-end tests"
	@echo "make test-floors - the same tests at the lowest dependency versions the requirement files allow"
	@echo "make up | down | serve | lint | bench | tools"

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(AZURITE):
	@command -v npm >/dev/null || { echo "npm (Node.js 18+) is required to install Azurite" >&2; exit 2; }
	mkdir -p .tools/node
	npm install --silent --no-audit --no-fund --prefix .tools/node azurite@$(AZURITE_VERSION)

$(AWSCLI):
	test -x .venv-tools/awscli/bin/python || $(PYTHON) -m venv .venv-tools/awscli
	.venv-tools/awscli/bin/python -m pip install --quiet --disable-pip-version-check awscli==$(AWSCLI_VERSION)

$(UV):
	test -x .venv-tools/uv/bin/python || $(PYTHON) -m venv .venv-tools/uv
	.venv-tools/uv/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# A fresh venv each time a requirement file changes: every direct dependency at its floor.
$(FLOORS_STAMP): requirements.txt requirements-dev.txt $(UV)
	rm -rf $(FLOORS)
	UV_PYTHON_DOWNLOADS=never $(UV) venv --quiet --python $(PYTHON) $(FLOORS)
	VIRTUAL_ENV=$(FLOORS) UV_PYTHON_DOWNLOADS=never $(UV) pip install --quiet --resolution lowest-direct \
		-r requirements-dev.txt
	touch $@

tools: $(STAMP) $(AZURITE)

up: tools
	$(PY) -m devstack up

down:
	@if [ -x $(PY) ]; then $(PY) -m devstack down; fi

serve: tools
	$(PY) -m devstack serve

lint: $(STAMP)
	$(PY) -m ruff check .

checkov:
	PYTHON=$(PYTHON) scripts/checkov.sh

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit -q

test: tools $(AWSCLI) lint checkov
	$(PY) -m pytest -q

test-floors: $(FLOORS_STAMP) $(AZURITE) $(AWSCLI)
	$(FLOORS)/bin/python -m ruff check --no-cache .
	$(FLOORS)/bin/python -m pytest -q -p no:cacheprovider

demo: tools
	$(PY) -m devstack.demo

bench: tools
	$(PY) -m bench

clean: down
	rm -rf .devstack .pytest_cache .ruff_cache $(FLOORS)
