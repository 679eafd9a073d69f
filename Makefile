# datasync developer commands. `make test` is what CI runs (see .ci/run).
#
# `make install` is the only target that downloads anything: it creates .venv/ (the
# system Python may refuse `pip install`, PEP 668), installs datasync and its tools into
# it, the npm packages, and builds web/ (which fetches the micropip and packaging wheels
# into build/wheels/). Every other target then runs offline, with .venv's Python.
# Another interpreter: `make test PYTHON=python3` (it must have what `make install` puts
# in .venv: datasync editable with [test,crypto,server,sync,postgres,otel], Playwright, setuptools).
VENV ?= .venv
BOOTSTRAP_PYTHON ?= python3
PYTHON ?= $(VENV)/bin/python
NPM ?= npm
# The Python package only (its node driver is inside the wheel). Browsers come from
# Debian (/usr/bin/chromium): never run `playwright install`.
PLAYWRIGHT ?= playwright==1.65.2
# pyproject.toml's [build-system] requires: installed so that `datasync build` makes the
# browser wheel with no download (pip --no-build-isolation; tests/test_web.py checks it).
BUILD_BACKEND = setuptools>=77
PORT ?= 8000
NPM_FLAGS = --no-audit --no-fund --loglevel=error

.PHONY: install postgres venv python test test-fast example bench bench-browser bench-sync bench-postgres clean distclean npm web demo

install: venv postgres  ## everything, downloaded once: Python packages, npm packages, web/
	$(PYTHON) -m pip install -q --disable-pip-version-check -e ".[test,crypto,server,sync,postgres,otel]" \
	    "$(PLAYWRIGHT)" "$(BUILD_BACKEND)"
	@$(MAKE) --no-print-directory npm
	$(PYTHON) -m datasync build
	$(PYTHON) tests/browser/pyodide_page.py >/dev/null   # wheels pytest needs in Pyodide

# PostgreSQL 15 from Debian's packages, for the postgres backend's tests: they start
# throw-away clusters with its initdb and pg_ctl (tests/pg_cluster.py), so the
# package's own cluster is not used. Installed only when missing.
PG_BIN ?= $(firstword $(wildcard /usr/lib/postgresql/*/bin))
postgres:           ## Debian's PostgreSQL server binaries (initdb, pg_ctl), if missing
	@if [ -z "$(PG_BIN)" ] && ! command -v pg_ctl >/dev/null 2>&1; then \
	    sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	    echo "installing postgresql-15 (apt)"; \
	    $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	        $$sudo apt-get install -y -qq postgresql-15 >/dev/null; \
	fi

# .venv/ is made only when PYTHON is .venv's (the default), and only once.
ifeq ($(PYTHON),$(VENV)/bin/python)
venv: $(PYTHON)     ## .venv/ with the system's Python (the only place pip installs)
$(PYTHON):
	@echo "$(BOOTSTRAP_PYTHON) -m venv $(VENV)"
	@$(BOOTSTRAP_PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "error: cannot create $(VENV) with \
	$(BOOTSTRAP_PYTHON): install the venv module (Debian: apt-get install python3-venv) \
	or pass BOOTSTRAP_PYTHON=/path/to/python3.11+" >&2; exit 1; }
else
venv: ;
endif

python:             # the interpreter the other targets use exists (no download here)
	@command -v "$(PYTHON)" >/dev/null 2>&1 || { echo "error: $(PYTHON) is missing: run \
	\`make install\` first (or pass PYTHON=/path/to/python)" >&2; exit 1; }

test: python        ## every test suite (offline once `make install` has run), on 2 processes
	$(PYTHON) -m datasync build >/dev/null   # web/ once, before the test processes share it
	$(PYTHON) -m pytest -q -n 2 --dist loadfile --durations=10

test-fast: python   ## skip the slow crash test
	$(PYTHON) -m pytest -q -m "not slow"

example: python     ## the main job, natively: a persistent database in a file
	$(PYTHON) examples/quickstart.py

bench: python       ## native benchmark (prints a markdown table)
	$(PYTHON) benchmarks/native.py

bench-sync: python   ## sync benchmark: a server process and native replicas (pull, push, bytes)
	$(PYTHON) benchmarks/sync.py

bench-postgres: python ## sync server on PostgreSQL: 1 and 2 processes vs the file server (throwaway cluster)
	$(PYTHON) benchmarks/sync_postgres.py

bench-browser: python ## browser benchmarks: one tab vs IDBFS vs raw IndexedDB, then multi-tab
	$(PYTHON) benchmarks/browser.py
	$(PYTHON) benchmarks/tabs.py

npm:                ## node_modules/ from package-lock.json (Pyodide, PyScript; downloads)
	@if [ -f package-lock.json ]; then $(NPM) ci $(NPM_FLAGS); else $(NPM) install $(NPM_FLAGS); fi

web: python         ## build web/: Pyodide runtime, datasync + micropip wheels, manifest.json
	@[ -f node_modules/pyodide/package.json ] || { echo "error: node_modules/pyodide is \
	missing: run \`make install\` (this target downloads nothing)" >&2; exit 1; }
	$(PYTHON) -m datasync build

.PHONY: package
package: web        ## the npm package for JS users: dist/datasync-<version>.tgz (npm pack; not published)
	$(PYTHON) -m datasync.tools.npm_package --out dist

demo: web           ## serve the repository (demo at http://127.0.0.1:$(PORT)/demo/)
	$(PYTHON) -m datasync serve --no-build --port $(PORT)

clean:              ## build products; keeps build/wheels/ (downloaded by `make install`)
	@[ ! -d build ] || find build -mindepth 1 -maxdepth 1 ! -name wheels -exec rm -rf {} +
	rm -rf dist *.egg-info .pytest_cache .hypothesis quickstart.dsdb*

distclean: clean    ## also what `make install` made: .venv/, node_modules/, web/, build/
	rm -rf $(VENV) node_modules web build
