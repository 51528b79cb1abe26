# winnow: `make demo` runs the pipeline on the built-in demo corpus, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check
STAMP := $(VENV)/.installed-stamp

SYSTEM_PACKAGES := prometheus prometheus-pushgateway

.PHONY: install system-deps demo test test-fast bench bench-pipeline bench-loader bench-tokenizer bench-dedup bench-filters clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) system-deps

# Debian packages the tests start on loopback (tests/monitoring): installed when run as root, as in CI.
system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! command -v prometheus-pushgateway >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SYSTEM_PACKAGES) >/dev/null \
	  || (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SYSTEM_PACKAGES) >/dev/null); \
	fi

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

bench-filters: $(STAMP)
	$(PY) bench/run.py filters

clean:
	rm -rf out .pytest_cache
