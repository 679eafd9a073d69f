# datasync developer commands. `make test` is what CI runs (see .ci/run).
PYTHON ?= python3

.PHONY: install test test-fast example bench clean

install:            ## install datasync with its test dependencies
	$(PYTHON) -m pip install -q -e ".[test,crypto]"

test:               ## every test suite
	$(PYTHON) -m pytest -q

test-fast:          ## skip the slow crash test
	$(PYTHON) -m pytest -q -m "not slow"

example:            ## the main job, natively: a persistent database in a file
	$(PYTHON) examples/quickstart.py

bench:              ## native benchmark (prints a markdown table)
	$(PYTHON) benchmarks/native.py

clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis quickstart.dsdb*
