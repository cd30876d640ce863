# Podium — two commands: `make run` (the whole system + a demo vote stream) and `make test`.
SHELL := /bin/bash
PY_BOOT ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ARENA_VENV := .cache/arena-rank-venv
# make up TOPOLOGY=cluster: 3 Kafka brokers, a Redis Cluster (3+3), 2 ingest, 2 rating, 2 api;
# TOPOLOGY=cluster-infra: the brokers and the Redis Cluster alone (docs/operations.md)
TOPOLOGY ?= $(or $(PODIUM_TOPOLOGY),single)

.PHONY: help install up down status run rebuild test test-only lint bench bench-cluster bench-recovery settings-doc lock clean

help:
	@echo "make run    start Kafka, Redis, ingest, rating, api + demo votes; prints the leaderboard URL"
	@echo "make test   install what is needed, start Kafka+Redis, lint, run the whole suite, stop them"
	@echo "make up / make down / make status   the stack without the demo"
	@echo "make up TOPOLOGY=cluster   3 Kafka brokers, a Redis Cluster, 2 ingest, 2 rating, 2 api"
	@echo "                           (TOPOLOGY=cluster-infra: the brokers and Redis Cluster only)"
	@echo "make rebuild  replay podium.votes into a fresh Redis key space, check it, switch to it"
	@echo "make bench  benchmarks (see bench/RESULTS.md)"
	@echo "make settings-doc  regenerate the settings table of docs/configuration.md"
	@echo "make lock   take the newest allowed package releases into constraints.txt (the tested set)"
	@echo "make bench-cluster  the production topology: end to end vs single node, failover times"
	@echo "make bench-recovery  Redis wiped with 10M votes in Kafka: time until every board is back"

# constraints.txt pins every package to the tested set: a new upstream release (uvicorn 0.55
# broke CI on 2026-12-02) changes nothing until `make lock` takes it deliberately.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PY_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

# take the newest releases pyproject.toml allows, then record them as the tested set
lock:
	$(PY) -m pip install -q --upgrade -e '.[dev]'
	{ sed -n '1,2p' constraints.txt; $(PY) -m pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

$(ARENA_VENV)/.installed: deploy/reference/requirements-arena-rank.txt
	$(PY_BOOT) -m venv $(ARENA_VENV)
	$(ARENA_VENV)/bin/python -m pip install -q -r $<
	touch $@

install: $(VENV)/.installed
	deploy/kafka/kafka.sh fetch
	deploy/redis/redis.sh install

up: install
	PODIUM_TOPOLOGY=$(TOPOLOGY) deploy/stack.sh up

down:
	deploy/stack.sh down

status:
	deploy/stack.sh status

run: install
	deploy/stack.sh run

rebuild: $(VENV)/.installed
	deploy/stack.sh rebuild

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: install $(ARENA_VENV)/.installed lint
	PODIUM_ARENA_RANK_PYTHON=$(CURDIR)/$(ARENA_VENV)/bin/python deploy/test.sh $(PYTEST_ARGS)

bench: install $(ARENA_VENV)/.installed
	$(PY) bench/engine_bench.py --arena-python $(CURDIR)/$(ARENA_VENV)/bin/python
	$(PY) bench/style_bench.py --arena-python $(CURDIR)/$(ARENA_VENV)/bin/python
	$(PY) bench/e2e_throughput.py
	$(PY) bench/http_bench.py
	$(PY) bench/latency_bench.py
	$(PY) bench/worker_cpu.py
	$(PY) bench/ingest_cpu.py
	$(PY) bench/memory_bench.py
	$(PY) bench/storm_bench.py --sizes 1000 5000
	$(PY) bench/fanout_bench.py --streams 5000
	$(MAKE) bench-recovery
	$(MAKE) bench-cluster

# Redis wiped with RECOVERY_VOTES votes in Kafka: the worker replays the votes topic (issue #17)
RECOVERY_VOTES ?= 10000000
# two workers as the production topology runs them; four arenas that fall on the four partitions
bench-recovery: install
	$(PY) bench/recovery_bench.py --votes $(RECOVERY_VOTES) --workers 2 \
		--arenas text vision search copilot

# the production topology (3 brokers, Redis Cluster 3+3, replicas) on ports of its own
bench-cluster: install
	$(PY) bench/cluster_e2e_bench.py
	$(PY) bench/failover_bench.py

settings-doc: $(VENV)/.installed
	$(PY) -m shared.settings_doc --write docs/configuration.md

clean:
	rm -rf .run $(VENV) .cache
