# winnow: `make demo` runs the pipeline on the built-in demo corpus, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check
STAMP := $(VENV)/.installed-stamp

# `make install` sets up everything (.[dev] = the pipeline and loader extras + test tools);
# `pip install winnow` alone is the shard format and the loader (README.md, Install).
.PHONY: install lint demo test test-fast bench bench-pipeline bench-loader bench-tokenizer bench-dedup bench-filters bench-toxicity bench-memory clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/winnow demo --output out/demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) bench/run.py

bench-pipeline: $(STAMP)
	$(PY) bench/run.py pipeline

bench-loader: $(STAMP)
	$(PY) bench/run.py loader

bench-tokenizer: $(STAMP)
	$(PY) bench/run.py tokenizer

bench-dedup: $(STAMP)
	$(PY) bench/run.py dedup

bench-toxicity: $(STAMP)
	$(PY) bench/run.py toxicity

bench-filters: $(STAMP)
	$(PY) bench/run.py filters

bench-memory: $(STAMP)
	$(PY) bench/run.py memory

clean:
	rm -rf out .pytest_cache
