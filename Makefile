# bccd — the two commands a newcomer needs: `make run` and `make test`; `make help` lists the rest.
#
# Two pinned sets, both generated from pyproject.toml by `make lock`:
#   requirements.lock       what bccd runs on (pyproject's dependencies): make run, Dockerfile, systemd
#   requirements-test.lock  the same pins plus the `test` extra: make test and everything below it
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(VENV)/bin/pip
PYTEST_ARGS ?=
N ?= 2000
QUICK ?=
UPGRADE ?=

# one stamp per set: `make run` then `make test` in one checkout adds the test tools
RUNTIME_STAMP = $(VENV)/.installed-runtime
TEST_STAMP    = $(VENV)/.installed-test

LOCK_VENV   = $(VENV)-lock
PIP_COMPILE = $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
              --no-emit-index-url --no-emit-find-links $(if $(UPGRADE),--upgrade)

.DEFAULT_GOAL := help
.PHONY: help run test test-fast lint typecheck bench dist lock migration venv clean

## list the targets
help:
	@awk '/^## /{doc=substr($$0, 4); next} /^[a-z][a-z-]*:/{if (doc) printf "  make %-10s %s\n", substr($$1, 1, length($$1) - 1), doc} {doc=""}' $(MAKEFILE_LIST)

$(PY):
	@echo "creating $(VENV)"
	@$(PYTHON) -m venv $(VENV)
	@$(PIP) install -q --upgrade pip

$(RUNTIME_STAMP): pyproject.toml requirements.lock | $(PY)
	@echo "installing the runtime set (requirements.lock) and bccd into $(VENV)"
	@$(PIP) install -q --require-hashes -r requirements.lock
	@$(PIP) install -q --no-deps -e .
	@touch $@

$(TEST_STAMP): pyproject.toml requirements-test.lock | $(PY)
	@echo "installing the test set (requirements-test.lock) and bccd into $(VENV)"
	@$(PIP) install -q --require-hashes -r requirements-test.lock
	@$(PIP) install -q --no-deps -e .
	@touch $@

## run bccd on its embedded defaults (SQLite under ./var, SMTP 127.0.0.1:2525, HTTP 127.0.0.1:8025)
run: $(RUNTIME_STAMP)
	$(VENV)/bin/bccd serve

## the whole suite (what CI runs): lint, types, migrations drift, every test
test: $(TEST_STAMP)
	$(VENV)/bin/ruff check bccd tests bench
	$(VENV)/bin/mypy --strict bccd
	$(VENV)/bin/pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

## the suite without the slowest tests (development)
test-fast: $(TEST_STAMP)
	$(VENV)/bin/pytest -n 2 --dist loadgroup -m "not slow" $(PYTEST_ARGS)

## create .venv with the test set (the development environment; make test does it too)
venv: $(TEST_STAMP)

## ruff on the code, the tests and the benchmarks
lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check bccd tests bench

## mypy --strict on bccd
typecheck: $(TEST_STAMP)
	$(VENV)/bin/mypy --strict bccd

## the benchmarks (bench/run.py; QUICK=1 for a short run, N messages)
bench: $(TEST_STAMP)
	$(PY) -m bench.run $(if $(QUICK),--quick) --n $(N)

## the wheel and the sdist into dist/ (what operators install)
dist: $(TEST_STAMP)
	rm -rf dist
	$(PY) -m build --no-isolation --outdir dist .

## regenerate both lock files from pyproject.toml (keeps current pins; UPGRADE=1 moves all to the newest)
lock:
	@echo "installing pip-tools into $(LOCK_VENV)"
	@rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	@$(LOCK_VENV)/bin/pip install -q --upgrade 'pip==26.3' 'pip-tools==7.7.0'
	@echo "requirements.lock: pyproject.toml's dependencies"
	@$(PIP_COMPILE) --output-file requirements.lock pyproject.toml
	@echo "requirements-test.lock: the same pins plus the test extra"
	@$(PIP_COMPILE) --extra test --constraint requirements.lock --output-file requirements-test.lock pyproject.toml
	@rm -rf $(LOCK_VENV)

## a new alembic revision from the models: make migration MSG="what changed" (then read it through)
migration: $(TEST_STAMP)
	test -n "$(MSG)" || (echo 'usage: make migration MSG="what changed"' && exit 2)
	rm -f /tmp/bccd-migration.sqlite3
	$(PY) -c "import glob; from alembic import command; from bccd.store.migrate import alembic_config; c = alembic_config('sqlite:////tmp/bccd-migration.sqlite3'); command.upgrade(c, 'head'); command.revision(c, message='$(MSG)', autogenerate=True, rev_id=f'{len(glob.glob(\"bccd/migrations/versions/*.py\")) + 1:04d}')"
	rm -f /tmp/bccd-migration.sqlite3
	$(VENV)/bin/ruff check --fix -q bccd/migrations || true
	@echo 'now set HEAD in bccd/store/migrate.py to the new revision id (tests/integration/test_schema.py checks it)'

## remove .venv, dist/ and the caches
clean:
	rm -rf $(VENV) $(LOCK_VENV) build dist bccd.egg-info .pytest_cache .mypy_cache .ruff_cache
