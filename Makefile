# Two commands for users: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean mutation

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	MPLBACKEND=Agg $(PY) examples/demo.py --out out

# Tests and example notebooks (nbmake), headless, with Jupyter's runtime files in a temp dir.
test: $(STAMP)
	tmp=$$(mktemp -d) && MPLBACKEND=Agg MPLCONFIGDIR=$$tmp/mpl JUPYTER_RUNTIME_DIR=$$tmp/jupyter \
		$(PY) -m pytest -q -n 2 --durations=15 --nbmake tests examples; rc=$$?; rm -rf $$tmp; exit $$rc

# Mutation testing of one module (mutmut in its own venv in /tmp, run on a copy of the
# repository; not part of `make test`). Results and the survivors' explanations: docs/mutation.md.
#   make mutation MUTATION_MODULE=pnpdeblur/metrics.py MUTATION_TESTS="tests/test_metrics.py"
MUTATION_MODULE ?= pnpdeblur/solvers/schedules.py
MUTATION_TESTS ?=
mutation: $(STAMP)
	PY=$(PY) scripts/mutation.sh $(MUTATION_MODULE) $(MUTATION_TESTS)

bench: $(STAMP)
	$(PY) benchmarks/operators.py

clean:
	rm -rf $(VENV) out .pytest_cache
