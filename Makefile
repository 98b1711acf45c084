# Two commands matter: `make run` and `make test`. Everything installs into .venv.
#
# What is installed is locked, with hashes: requirements.lock holds the gateway's own
# dependencies (pyproject's [project.dependencies], all `make run` needs), requirements-dev.lock
# those and the developer toolchain (the `dev` extra: pytest, mypy, ruff, playwright, locust …;
# what `make test` needs). `make lock` regenerates both from pyproject.toml.
#
# pip installs one thing, uv (pinned with hashes in requirements-uv.lock), and uv installs the
# locks: about 10 s on a fresh clone instead of pip's 30 to 50.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev
UV := $(BIN)/uv
# mypy's incremental cache is kept per user, beside pip's and uv's, not in the clone: a fresh
# clone type-checks in about a second instead of 17 (it re-checks what differs from the last
# check on this machine; mypy validates each cached module against its source's hash and the
# options, so a stale entry is never used). MYPY_CACHE_DIR=.mypy_cache keeps one per clone.
export MYPY_CACHE_DIR ?= $(if $(HOME),$(HOME)/.cache/yiwang-gateway/mypy,.mypy_cache)
# Byte-compiled at install: the suite starts dozens of Python processes, and every one of them
# would otherwise compile what it imports again (PYTHONDONTWRITEBYTECODE is set on some machines).
UV_INSTALL := $(UV) pip install --quiet --python $(BIN)/python --compile-bytecode
PIP_COMPILE := $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-find-links --no-emit-index-url

.PHONY: run test lint bench bench-scale coverage install install-dev lock clean

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "need python3.11 on PATH (or set PYTHON=...)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "need Python >= 3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(UV): $(BIN)/python requirements-uv.lock
	$(PIP) install --quiet --require-hashes -r requirements-uv.lock
	@touch $(UV)

$(RUNTIME): $(UV) requirements.lock pyproject.toml
	$(UV_INSTALL) --require-hashes -r requirements.lock
	$(UV_INSTALL) --no-deps -e .
	@touch $(RUNTIME)

# The dev lock holds the runtime pins too (it is compiled under them): one install, not two.
$(DEV): $(UV) requirements.lock requirements-dev.lock pyproject.toml
	$(UV_INSTALL) --require-hashes -r requirements-dev.lock
	$(UV_INSTALL) --no-deps -e .
	@touch $(RUNTIME) $(DEV)

install: $(RUNTIME)

install-dev: $(DEV)

run: $(RUNTIME)
	$(BIN)/gateway serve

# The suite's temporary files (its SQLite databases, its own PostgreSQL clusters, uploads) live
# in memory where the machine has a tmpfs: they are real databases all the same, but one test's
# million-row load no longer makes another's fsync wait for seconds (which an in-process
# gateway, rightly, answered with 503). Bytecode is written: a fresh clone compiles each
# module once, not once per process. mypy runs before the suite, not beside it: the suite keeps
# both cores busy, and what mypy took from it came back as latency in its concurrency tests.
SUITE_ENV := env -u PYTHONDONTWRITEBYTECODE $(shell test -d /dev/shm -a -w /dev/shm && echo TMPDIR=/dev/shm)

test: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(SUITE_ENV) $(BIN)/pytest -q -n 3 --dist worksteal

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Both locks from pyproject.toml, keeping every pin that still fits (add --upgrade to move them
# all). The dev lock is constrained by the runtime one, so both install the same versions.
lock: $(BIN)/python
	@test -x $(BIN)/pip-compile || $(PIP) install --quiet "pip-tools>=7.5"
	$(PIP_COMPILE) --output-file=requirements.lock pyproject.toml
	$(PIP_COMPILE) --extra=dev --constraint=requirements.lock \
		--output-file=requirements-dev.lock pyproject.toml
	grep -o '^uv==[^ ]*' requirements-uv.lock | $(PIP_COMPILE) --output-file=requirements-uv.lock -

# The whole suite under coverage.py, subprocess gateways included (see [tool.coverage.*]).
coverage: $(DEV)
	$(BIN)/coverage erase
	$(SUITE_ENV) COVERAGE_PROCESS_START=$(CURDIR)/pyproject.toml $(BIN)/coverage run -m pytest -q -n 3 --dist worksteal
	$(BIN)/coverage combine -q
	$(BIN)/coverage report --sort=cover | tail -n 25

bench: $(DEV)
	$(BIN)/python -m loadtests.bench

# A small and a large district (10⁶ audit entries, 10⁵ licences, 10³ grants, 10⁵ subjects per
# source, built in bulk: minutes), the same requests on both; growth per operation and memory.
# SCALE_ARGS="--entries 100000" etc. for a quicker run.
bench-scale: $(DEV)
	$(BIN)/python -m loadtests.scale $(SCALE_ARGS)

clean:
	rm -rf $(VENV) data
