# Every target creates .venv from the lock file when it is missing or stale.
# Only python3 is needed on the machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo test check bench lock clean redis rabbitmq

$(STAMP): requirements-dev.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -c "from tracer._store._wire import warm; warm()"  # compile the protobuf walk once
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/agentrace demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

check: $(STAMP)
	$(BIN)/ruff check tracer engine tui tests bench
	$(BIN)/ruff format --check tracer engine tui tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m bench

# Debian's redis-server for the Redis tests and benchmark (as root; nothing if one is there).
redis:
	scripts/redis.sh install

# Debian's rabbitmq-server for the broker tests (as root; nothing if one is there).
rabbitmq:
	scripts/rabbitmq.sh install

# Re-resolve the lock after changing dependencies in pyproject.toml.
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --all-extras --group pyproject.toml:dev \
	  --python-version 3.11 --generate-hashes --no-emit-index-url --no-header -o requirements-dev.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
