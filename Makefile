# Two commands do all set-up on a fresh machine:  make demo  |  make test
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test bench clean

$(STAMP): requirements.txt requirements-train.txt requirements-dev.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m hndesc_ros.cli demo --out outputs/demo

test: $(STAMP)
	$(PY) -m pytest -q -ra test

bench: $(STAMP)
	$(PY) bench/extract.py
	$(PY) bench/vo.py

clean:
	rm -rf $(VENV) build install log outputs
