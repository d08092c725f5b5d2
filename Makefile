# The two commands of the contract: `make run` and `make test`. Everything else is a helper of those.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-full lint typecheck services demo bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) is needed (set PYTHON=...)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## Start a region of separate nodes on embedded defaults (SQLite, no queue server): XK, AL, MK and BA, each
## its own API, worker, database and folder under var/region/, on ports PORT, PORT+1, PORT+2, PORT+3; the
## governance key (standing for the offline key) in var/region/governance/ signs the directory installed on
## every node. Prints each node's URL and accounts; Ctrl-C stops all; a second run reuses the folders.
## `make run PORT=8080` for other ports; `make run PENDING=0` for empty queues on fresh folders (otherwise
## demo work waits on every node, made across them). One node alone: `spoc run --country XK`; every
## contact point on one node, as before: `spoc run --hub`.
## Agencies' push receivers on this machine (127.0.0.1) are allow-listed here, explicitly: push delivery
## refuses loopback and private addresses unless SPOC_PUSH_ALLOWED_NETWORKS names them (set it to
## override; set it empty for public https only).
PORT ?= 8000
PENDING ?= 1
run: $(STAMP)
	SPOC_PUSH_ALLOWED_NETWORKS="$${SPOC_PUSH_ALLOWED_NETWORKS-127.0.0.1/32,::1/128}" \
	  $(BIN)/spoc run --port $(PORT) $(if $(filter 0,$(PENDING)),--no-pending,)

## Install everything, start PostgreSQL and Redis if they are down, lint, type-check and test.
test: $(STAMP) services
	@test -x /usr/bin/chromium || { echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }  # Playwright drives it; never `playwright install`
	@command -v node >/dev/null || { echo "installing Debian's nodejs for the Node.js interop agency"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs >/dev/null; }  # tests/interop/node_agency: plain node, never npm
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q -m "not slow" -n 2  # two workers; a module (or a shared folder) stays on one (tests/conftest.py)

test-full: $(STAMP) services
	$(BIN)/pytest -q

demo: $(STAMP)
	$(BIN)/spoc demo

## The benchmark on the real stack (PostgreSQL and Redis on 127.0.0.1); see README "Benchmark".
bench: $(STAMP) services
	$(BIN)/spoc bench

# PostgreSQL and Redis on 127.0.0.1 for the integration tests. With SPOC_REQUIRE_SERVICES=1 (CI) a service
# that cannot be started fails the run; otherwise the integration tests skip and say why.
services:
	@if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then \
	  echo "starting PostgreSQL"; \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql 2>/dev/null | head -n1) main start 2>&1 || true; \
	  for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; \
	fi
	@if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then \
	  echo "starting Redis"; \
	  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null 2>&1 || true; \
	  for i in $$(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done; \
	fi
	@if [ "$${SPOC_REQUIRE_SERVICES:-0}" = "1" ]; then \
	  pg_isready -q -h 127.0.0.1 -p 5432 || { echo "make: PostgreSQL is required (SPOC_REQUIRE_SERVICES=1) and is not running"; exit 1; }; \
	  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || { echo "make: Redis is required (SPOC_REQUIRE_SERVICES=1) and is not running"; exit 1; }; \
	fi

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
