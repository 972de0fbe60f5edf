# The two commands a newcomer types: `make run` and `make test`. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test unit lint deps venv bench clean

run: venv
	@scripts/run-demo.sh

test: deps venv
	$(PY) -m ruff check hostsyncd tests scripts bench
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

unit: venv
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

lint: venv
	$(PY) -m ruff check hostsyncd tests scripts bench

deps:
	@scripts/ensure-deps.sh

# Re-run pip only when the project's metadata changed.
venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@scripts/ensure-deps.sh python
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,journald]'
	@touch $@

bench: deps venv
	$(PY) -m pip install -q matplotlib py-spy
	$(PY) bench/run.py $(BENCH_ARGS)

# The churn soak (bench/soak.py): 5,000 create/start/remove cycles of dependents and
# targets, RSS and the state file checked; about 40 minutes, so not in `make bench` or
# `make test` (tests/faults/test_churn.py runs 300 of the same cycles). A shorter run:
# make soak SOAK_ARGS="--cycles 500"
.PHONY: soak
soak: deps venv
	$(PY) bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info mutants

# Mutation testing of the pure core (README.md, "Mutation testing"): mutmut mutates
# hostsyncd/core/ and runs tests/unit against each mutant; the score per module and in total
# is printed, and under 90% fails. Minutes, not seconds, so not in `make test`. Starts from
# scratch each time (mutants/ is mutmut's cache); MUTATION_JOBS=1 leaves a shared machine a
# core. `.venv/bin/mutmut results` and `mutmut show <name>` then explain a survivor.
.PHONY: mutation
MUTATION_JOBS ?= $(shell nproc)

mutation: venv $(VENV)/.mutation
	rm -rf mutants
	HSD_MUTATION=1 $(VENV)/bin/mutmut run --max-children $(MUTATION_JOBS)
	$(PY) scripts/mutation_score.py --fail-under 90

$(VENV)/.mutation: pyproject.toml
	$(PY) -m pip install -q -e '.[test,journald,mutation]'
	@touch $@

# Release artifacts (packaging/README.md): `make dist` puts a wheel and an sdist in dist/,
# `make deb` dist/hostsyncd_<version>+deb12_<arch>.deb and +deb13, each built in a root of
# its Debian release (cached in /var/cache/hostsyncd-roots). Both skip the work when nothing
# changed.
.PHONY: dist deb

dist: venv
	@PY=$(PY) packaging/build.sh dist

deb: dist
	@scripts/ensure-deps.sh deb
	@packaging/build.sh deb
