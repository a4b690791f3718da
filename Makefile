# Set-up and entry points. Each target creates .venv and installs into it.
VENV ?= .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2
# Worker processes of the default test run (pytest-xdist; one test file per
# worker at a time, so module fixtures are built once).
TEST_WORKERS ?= 2

.PHONY: demo test test-slow install

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[meta,plots,test]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) examples/digits_demo.py

test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15

test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -m slow
