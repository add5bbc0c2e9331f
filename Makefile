# `make demo` and `make test` work on a fresh clone: each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test fuzz bench soak soak-short lint typecheck docs matrix wheel-check venv clean

venv: $(STAMP)

$(STAMP): requirements.txt setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python manage.py check
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/python -m coverage run -m pytest $(PYTEST_ARGS)
	$(BIN)/python -m coverage report --fail-under=90

# The property-based machines and the webhook fuzz (tests/properties/) with many more examples
# from a random seed; `make test` runs the same few, derandomized. Set DATABASE_URL for
# PostgreSQL; FUZZ_PROFILE=dev for a shorter run.
FUZZ_PROFILE ?= fuzz
fuzz: $(STAMP)
	KHAIME_HYPOTHESIS_PROFILE=$(FUZZ_PROFILE) $(BIN)/python -m pytest tests/properties $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py demo_setup
	$(BIN)/python manage.py demo_serve

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# The shop under gunicorn workers, load and faults, its ledger checked against the emulator's
# (benchmarks/soak; needs PostgreSQL at SOAK_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/).
# Writes benchmarks/SOAK.md; soak-short is the CI run (a few hundred purchases, SOAK-short.md).
soak: $(STAMP)
	$(BIN)/python -m benchmarks.soak $(SOAK_ARGS)

soak-short: $(STAMP)
	$(BIN)/python -m benchmarks.soak --short $(SOAK_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The documentation site (docs/: Sphinx, MyST-Parser, Furo), every warning an error.
docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

# The tox matrix (tox.ini): Python 3.11 + Django 5.2 and Python 3.13 + Django 6.x, on SQLite and
# PostgreSQL (DATABASE_URL for it: TOX_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test).
# The interpreters come from pyenv when it has them. A missing one is skipped with a message, but
# with CI=true it fails the run. TOX_ENVS=a,b runs only those environments.
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null)
empty :=
MATRIX_PATH := $(subst $(empty) $(empty),:,$(strip $(wildcard $(PYENV_ROOT)/versions/3.11.*/bin $(PYENV_ROOT)/versions/3.13.*/bin)))

matrix: $(STAMP)
	PATH="$(MATRIX_PATH)$(if $(MATRIX_PATH),:)$$PATH" $(BIN)/tox run \
		--skip-missing-interpreters $(if $(filter true,$(CI)),false,true) $(if $(TOX_ENVS),-e $(TOX_ENVS))

# The built wheel installed in a new `django-admin startproject` project (.ci/wheel-check).
wheel-check:
	bash .ci/wheel-check

clean:
	rm -rf $(VENV) .hypothesis .pytest_cache .mypy_cache .tox .coverage htmlcov build dist *.egg-info docs/_build
