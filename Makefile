# Every target installs what it needs first: on a fresh machine `make local` or `make test` is all.
SHELL := /bin/bash
UV := python3 -m uv
RUN := $(UV) run --frozen
REGION ?= us-east-1
export TZ := UTC
export SAM_CLI_TELEMETRY := 0

CHECKOV := $(UV) tool run --python 3.13 --from checkov==3.3.30 checkov

.PHONY: setup lint format validate security test build local deploy openapi bench cost requirements sizes

setup:
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --frozen --all-extras

lint: setup
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy

format: setup
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

# The application (template.yaml) and the organization mode's plain CloudFormation templates.
TEMPLATES := template.yaml member-role.yaml region-forwarder.yaml

# sam validate reads template.yaml only: member-role.yaml and region-forwarder.yaml are plain
# CloudFormation (no Transform), which cfn-lint checks alone.
validate: setup
	$(RUN) cfn-lint $(TEMPLATES)
	$(RUN) sam validate --lint --region $(REGION)

# Every skip is justified next to its resource (Metadata.checkov.skip) in each template.
security: setup
	$(CHECKOV) $(addprefix -f ,$(TEMPLATES)) --skip-download --compact --quiet

test: lint validate security
	$(RUN) pytest -n 4

build: validate
	$(RUN) sam build

# The whole stack on emulated AWS: API on 127.0.0.1:3000, emulated AWS on :3001. Options: ARGS="--help".
local: setup
	$(RUN) autoblock-local $(ARGS)

deploy: build
	$(RUN) sam deploy --guided

openapi: setup
	$(RUN) python scripts/openapi.py

# Figures on emulated AWS, autoblock beside the seed's design: docs/benchmarks.md and .json.
bench: setup
	$(RUN) python -m bench.run

# The idle cost a month, computed from template.yaml: rewrites the cost section of README.md and
# docs/benchmarks.md (a test fails when they are stale).
cost: setup
	$(RUN) python -m bench.cost --write

# functions/requirements.txt from uv.lock: what the functions ship, minus what the Lambda runtime
# provides (a test fails when it drifts from the lock).
requirements: setup
	$(RUN) python scripts/requirements.py

# Each function's package after `make build`, in MB; fails if one ships boto3 or botocore.
sizes:
	$(RUN) python -m bench.cost --sizes
