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

.PHONY: help tools up down serve demo test test-unit lint checkov bench clean

help:
	@echo "make demo   - local cloud up, seed both clouds, backup, combined listing, down"
	@echo "make test   - lint, checkov (infra), unit + integration (devstack) + end-to-end tests"
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

demo: tools
	$(PY) -m devstack.demo

bench: tools
	$(PY) -m bench

clean: down
	rm -rf .devstack .pytest_cache .ruff_cache
