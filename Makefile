# datasync developer commands. `make test` is what CI runs (see .ci/run).
PYTHON ?= python3
NPM ?= npm
# The Python package only (its node driver is inside the wheel). Browsers come from
# Debian (/usr/bin/chromium): never run `playwright install`.
PLAYWRIGHT ?= playwright==1.65.2
PORT ?= 8000
NPM_FLAGS = --no-audit --no-fund --loglevel=error

.PHONY: install test test-fast example bench bench-browser clean npm web demo

install:            ## install datasync with its test dependencies, Playwright and Pyodide
	$(PYTHON) -m pip install -q -e ".[test,crypto]"
	$(PYTHON) -m pip install -q "$(PLAYWRIGHT)"
	@$(MAKE) --no-print-directory npm

test:               ## every test suite
	$(PYTHON) -m pytest -q

test-fast:          ## skip the slow crash test
	$(PYTHON) -m pytest -q -m "not slow"

example:            ## the main job, natively: a persistent database in a file
	$(PYTHON) examples/quickstart.py

bench:              ## native benchmark (prints a markdown table)
	$(PYTHON) benchmarks/native.py

bench-browser:      ## browser benchmarks: one tab vs IDBFS vs raw IndexedDB, then multi-tab
	$(PYTHON) benchmarks/browser.py
	$(PYTHON) benchmarks/tabs.py

npm:                ## node_modules/ from package-lock.json (the pinned Pyodide runtime)
	@if [ -f package-lock.json ]; then $(NPM) ci $(NPM_FLAGS); else $(NPM) install $(NPM_FLAGS); fi

web:                ## build web/: Pyodide runtime, datasync + micropip wheels, manifest.json
	@[ -f node_modules/pyodide/package.json ] || $(MAKE) --no-print-directory npm
	$(PYTHON) -m datasync build

.PHONY: package
package: web        ## the npm package for JS users: dist/datasync-<version>.tgz (npm pack; not published)
	$(PYTHON) -m datasync.tools.npm_package --out dist

demo: web           ## serve the repository (demo at http://127.0.0.1:$(PORT)/demo/)
	$(PYTHON) -m datasync serve --no-build --port $(PORT)

clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis quickstart.dsdb*
