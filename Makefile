# The entry points of the project. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.collections
export ANSIBLE_ROLES_PATH := $(CURDIR)/roles
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export PY_COLORS := 1
export ANSIBLE_FORCE_COLOR := 1

# Molecule scenarios run by `make test`, in order.
MOLECULE_SCENARIOS ?= docker_host default

.PHONY: help
help: ## Show this list
	@grep -hE '^[a-z][a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

## --- setup ---------------------------------------------------------------
.PHONY: bootstrap system venv collections constraints
bootstrap: ## Install everything missing: Docker + Compose v2, venv, collections
	scripts/bootstrap all

system: ## Only the system packages: Docker engine, Compose v2, debootstrap, jq, wrk, ssh (root)
	scripts/bootstrap system

venv: ## Only the project venv (.venv) with the pinned toolchain
	scripts/bootstrap venv

collections: venv ## Only the pinned Ansible collections (.collections)
	scripts/bootstrap collections

constraints: ## Re-pin constraints.txt from the current venv
	{ echo "# Pinned versions of the whole controller/gateway Python toolchain (pip install -c constraints.txt)."; \
	  echo "# Regenerate with: make constraints"; \
	  $(BIN)/pip freeze --exclude-editable | grep -v '^mlflow-gateway-tools' | sort -f; } > constraints.txt

## --- the lab --------------------------------------------------------------
.PHONY: lab-images lab-up lab-down lab-status
lab-images: bootstrap ## Build the lab images (base image offline via debootstrap)
	scripts/lab images

lab-up: bootstrap ## Start the lab: bastion, two Docker hosts, fake upstream, registry
	scripts/lab up

lab-down: ## Remove every container, network and volume the lab made
	scripts/lab down

lab-status: ## Show the lab members and their state
	scripts/lab status

## --- the main job ---------------------------------------------------------
.PHONY: deploy evaluate demo
deploy: ## Deploy to the lab (prod mode) through the bastion
	$(BIN)/ansible-playbook deploy.yml

evaluate: ## Evaluate the lab deployment and fetch results to results/
	$(BIN)/ansible-playbook playbooks/evaluate.yml

demo: lab-up ## From a fresh clone: lab, deploy, evaluate, print the cost summary
	$(BIN)/ansible-playbook deploy.yml -e gateway_mode=prod -e gateway_replicas=3
	$(BIN)/ansible-playbook playbooks/evaluate.yml
	@echo; for summary in results/*/latest/summary.txt; do cat "$$summary"; echo; done

## --- quality ---------------------------------------------------------------
.PHONY: lint unit molecule lab-tests test bench drills
lint: bootstrap ## ansible-lint (production profile), yamllint, ruff, mypy
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint
	$(BIN)/ruff check tools tests benchmarks scripts/install-collections
	$(BIN)/ruff format --check tools tests benchmarks
	$(BIN)/mypy  # what it checks and how strictly: [tool.mypy] in pyproject.toml

unit: lab-images ## pytest without the lab: tools, a real MLflow gateway, roles, templates (nginx -t in the lab base image)
	$(BIN)/pytest -q -m "not lab"
	# The fault drills that need no lab (upstream bursts, a bad config while serving, a full or
	# read-only results directory): the reduced form of make drills.
	$(BIN)/pytest -q -m "drill and not lab" tests/drills

molecule: lab-images ## Molecule: host preflight and the whole deploy on Docker-in-Docker hosts
	for s in $(MOLECULE_SCENARIOS); do $(BIN)/molecule test -s $$s || exit 1; done

lab-tests: lab-up ## Deploy to the lab through the bastion (molecule lab_ssh), then the lab tests
	$(BIN)/molecule test -s lab_ssh
	$(BIN)/pytest -q -m lab
	# One lab drill on the deployment lab_ssh left: upstream 429/500 bursts through the egress
	# proxy reach clients with their status and cost nothing. The rest: make drills.
	$(BIN)/pytest -q -m "drill and lab" -k bursts tests/drills

test: lint unit ## Everything CI runs: lint, pytest, then molecule beside the lab over SSH
	# The molecule scenarios and the lab lane share nothing but the controller's Docker engine
	# (their own hosts, networks, build caches and ports): run side by side, each lane's output
	# printed whole when it ends. Most of either lane is waiting on containers that boot.
	$(MAKE) --no-print-directory -j2 --output-sync=target molecule lab-tests

bench: bootstrap ## Benchmarks; prints a table and writes benchmarks/results.md
	$(MAKE) --no-print-directory lab-up
	$(BIN)/python benchmarks/run.py

drills: lab-up ## Fault drills against the lab
	$(BIN)/ansible-playbook deploy.yml -e gateway_mode=prod -e gateway_replicas=3
	$(BIN)/pytest -q -m drill tests/drills
