# Every target installs what it needs on first use: a fresh machine needs only `make demo`/`make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
NODE_STAMP := node_modules/.installed-stamp
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test test-fast container-engine lint synth deploy destroy bench schema clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==26.3"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[cdk,dev,examples]"
	touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

## Run examples/train_tiny.py through the real state machine, locally (emulated AWS).
demo: $(STAMP)
	$(VENV)/bin/runctl local run examples/train_tiny.py --hp lr=0.05 --hp steps=200 --experiment demo --interrupt-after 15

## Every test: unit, integration (moto), infra (CDK synth, cdk-nag, cfn-lint), e2e in local mode.
test: $(STAMP) container-engine
	$(PY) -m pytest -n 2 --dist loadgroup -q

## The Docker engine and base image the container tests use (idempotent; installs as root).
container-engine:
	scripts/container_engine.sh

## Unit and integration tests only (seconds).
test-fast: $(STAMP) container-engine
	$(PY) -m pytest -q tests/unit tests/integration

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

## Offline: the CloudFormation template and assets in cdk.out/ (cdk.json runs app.py with .venv).
synth: $(STAMP) $(NODE_STAMP)
	npx cdk synth --quiet

# Options for the CDK CLI, e.g. CDK_ARGS='-c runctl:region=eu-west-1 --profile lab'.
CDK_ARGS ?=
# cdk deploy --require-approval: never, any-change, broadening (asks before IAM or security-group
# changes that widen access), destructive.
REQUIRE_APPROVAL ?= broadening

## Deploy the stack with your AWS credentials: bootstraps the account/region for CDK if needed.
deploy: $(STAMP) $(NODE_STAMP)
	$(PY) -m stacks.deploy deploy --require-approval $(REQUIRE_APPROVAL) -- $(CDK_ARGS)

## Delete the stack (asks first; FORCE=1 does not); says what it keeps: the buckets and runs table.
destroy: $(STAMP) $(NODE_STAMP)
	$(PY) -m stacks.deploy destroy $(if $(FORCE),--force) -- $(CDK_ARGS)

## Measured figures (interruption latency, state transitions), printed and written to bench/results.json.
bench: $(STAMP)
	$(PY) -m bench.run

## Regenerate the published RunSpec and SweepSpec JSON Schemas.
schema: $(STAMP)
	$(VENV)/bin/runctl schema --output schemas/runspec.schema.json
	$(VENV)/bin/runctl schema --sweep --output schemas/sweepspec.schema.json

clean:
	rm -rf $(VENV) node_modules cdk.out .runctl-local .pytest_cache .ruff_cache .mypy_cache
