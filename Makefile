# nbserve: `make demo` serves the bundled example model; `make test` runs every test;
# `make lint` checks style (ruff), types (mypy --strict), layers (import-linter) and the lab extension.
# Both bootstrap .venv on a fresh machine (Python 3.10+ with venv and pip).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test lint venv clean bench

venv: $(STAMP)

LABEXT_SRC := $(wildcard labextension/package.json labextension/src/*.ts labextension/style/*)

$(STAMP): pyproject.toml $(LABEXT_SRC)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	command -v chromium >/dev/null || (command -v apt-get >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed: the browser test (tests/lab/test_browser.py) will skip"
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,notebook]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m nbserve.demo

test: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest $(PYTEST_ARGS)

# Every check reads its configuration from pyproject.toml (ruff, mypy, import-linter) or
# labextension/ (tsconfig.json, eslint.config.mjs). PYTHONPATH: lint this tree, whatever
# checkout the venv was installed from.
LABEXT_NODE := labextension/node_modules/.package-lock.json

$(LABEXT_NODE): labextension/package.json labextension/package-lock.json
	cd labextension && npm ci --no-audit --no-fund
	touch $@

# Every tool runs (and reports) even when an earlier one finds something; lint fails if any did.
lint: $(STAMP) $(LABEXT_NODE)
	@status=0; \
	echo "== ruff"; $(VENV)/bin/ruff check . || status=1; \
	echo "== mypy --strict"; PYTHONPATH=$(CURDIR) $(VENV)/bin/mypy || status=1; \
	echo "== import-linter"; PYTHONPATH=$(CURDIR) $(VENV)/bin/lint-imports || status=1; \
	echo "== labextension: tsc --noEmit, eslint"; (cd labextension && npm run --silent lint) || status=1; \
	exit $$status

# The benchmark (issues 6 and 12: bench/RESULTS.md, bench/results.png); ~16 min here, BENCH_QUICK=1
# ~5 min on a quiet machine (results in .cache/bench-quick/). The peers (KServe, MLServer,
# PyTriton, Ray Serve) get their own venvs under .cache/bench-venvs on first use (PyPI, a few
# minutes each); a peer whose install fails is skipped by the harness with a note.
# REST load: wrk; gRPC load: h2load (nghttp2-client). BENCH_VENVS=DIR: peer venvs elsewhere.
BENCH_VENVS ?= .cache/bench-venvs
BENCH_PEERS_ALL := kserve mlserver pytriton ray
PEER_PKG_kserve   := kserve
PEER_PKG_mlserver := mlserver
PEER_PKG_pytriton := nvidia-pytriton>=0.7
PEER_PKG_ray      := ray[serve]

$(BENCH_VENVS)/%/.installed:
	test -x $(BENCH_VENVS)/$*/bin/python || $(PYTHON) -m venv $(BENCH_VENVS)/$*
	$(BENCH_VENVS)/$*/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENVS)/$*/bin/python -m pip install --quiet '$(PEER_PKG_$*)' tensorflow-cpu
	touch $@

bench: $(STAMP)
	command -v wrk >/dev/null && command -v h2load >/dev/null || (DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nghttp2-client >/dev/null)
	$(PY) -c "import orjson, matplotlib" 2>/dev/null || $(PY) -m pip install --quiet orjson matplotlib py-spy
	@for peer in $(BENCH_PEERS_ALL); do \
	  $(MAKE) --no-print-directory $(BENCH_VENVS)/$$peer/.installed || echo "bench: the $$peer venv could not be installed; the harness skips $$peer"; \
	done
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache build dist nbserve/labextension labextension/lib labextension/node_modules
