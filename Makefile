# bccd — the two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(VENV)/bin/pip
STAMP   = $(VENV)/.installed
PYTEST_ARGS ?=
N ?= 2000
QUICK ?=

.PHONY: run test test-fast lint typecheck check bench clean venv migration lock

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.lock
	$(PIP) install -q --no-deps -e .
	touch $(STAMP)

## run bccd on its embedded defaults (SQLite under ./var, SMTP 127.0.0.1:2525, HTTP 127.0.0.1:8025)
run: venv
	$(VENV)/bin/bccd serve

## the whole suite (what CI runs): lint, types, migrations drift, every test
test: venv
	$(VENV)/bin/ruff check bccd tests bench
	$(VENV)/bin/mypy --strict bccd
	$(VENV)/bin/pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

## the suite without the slowest tests (development)
test-fast: venv
	$(VENV)/bin/pytest -n 2 --dist loadgroup -m "not slow" $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check bccd tests bench

typecheck: venv
	$(VENV)/bin/mypy --strict bccd

bench: venv
	$(PY) -m bench.run $(if $(QUICK),--quick) --n $(N)

## regenerate the lock file from pyproject.toml (maintainers)
lock:
	rm -rf /tmp/bccd-lock && $(PYTHON) -m venv /tmp/bccd-lock
	/tmp/bccd-lock/bin/pip install -q --upgrade pip
	/tmp/bccd-lock/bin/pip install -q -e '.[test]'
	/tmp/bccd-lock/bin/pip freeze --exclude-editable | grep -v '^-e' > requirements.lock

## before the first release only: rebuild the single initial migration from the models
# a new revision for model changes: make migration MSG="what changed" (then read it through)
migration: venv
	test -n "$(MSG)" || (echo 'usage: make migration MSG="what changed"' && exit 2)
	rm -f /tmp/bccd-migration.sqlite3
	$(PY) -c "import glob; from alembic import command; from bccd.store.migrate import alembic_config; c = alembic_config('sqlite:////tmp/bccd-migration.sqlite3'); command.upgrade(c, 'head'); command.revision(c, message='$(MSG)', autogenerate=True, rev_id=f'{len(glob.glob(\"bccd/migrations/versions/*.py\")) + 1:04d}')"
	rm -f /tmp/bccd-migration.sqlite3
	$(VENV)/bin/ruff check --fix -q bccd/migrations || true
	@echo 'now set HEAD in bccd/store/migrate.py to the new revision id (tests/integration/test_schema.py checks it)'

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
