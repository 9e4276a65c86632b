# Each target sets up .venv itself; the install is redone only when pyproject.toml or TORCH changes.
PYTHON ?= python3
TORCH ?= torch==2.13.0
# pytest-xdist workers for make test (0: run in this process); files stay whole on one worker so
# their module fixtures (an MLflow server, a sweep) are built once
TEST_WORKERS ?= 2
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(subst =,-,$(subst $() ,_,$(TORCH)))

.PHONY: install train test lint bench bench-tabular transfer clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $@

train: $(STAMP)
	$(PY) -m litforge.train $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# benchmarks print tables (not part of make test)
bench: $(STAMP)
	$(PY) -m tests.benchmarks.bench_overhead
	$(PY) -m tests.benchmarks.bench_startup
	$(PY) -m tests.benchmarks.bench_text
	$(PY) -m tests.benchmarks.bench_encoders
	$(PY) -m tests.benchmarks.bench_mlm_data
	$(PY) -m tests.benchmarks.bench_sweep
	$(PY) -m tests.benchmarks.bench_pruning
	$(PY) -m tests.benchmarks.bench_serve
	$(PY) -m tests.benchmarks.bench_vision
	$(PY) -m tests.benchmarks.bench_tabular

# scikit-learn's HistGradientBoosting and linear models beside litforge's tabular nets, on the same rows
bench-tabular: $(STAMP)
	$(PY) -m tests.benchmarks.bench_tabular $(ARGS)

# experiment=digits_transfer: pre-train on digits 0-4, fine-tune on 20 labels/class of 5-9, vs from scratch
transfer: $(STAMP)
	$(PY) -m tests.benchmarks.bench_transfer $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

clean:
	rm -rf $(VENV) logs/train logs/eval .pytest_cache
