# Two entry points for a fresh machine: `make demo` and `make test`.
# Everything is installed into $(VENV); apt packages through scripts/install-apt.sh.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_out
# torch is pinned: 2.13.0 is a local CPU build; an unpinned torch pulls GBs of CUDA wheels.
TORCH_PIN := torch==2.13.0

.PHONY: install apt demo test lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: apt $(STAMP)

apt:
	bash scripts/install-apt.sh

demo: install
	$(VENV)/bin/llamadna build-dataset --out $(DEMO_OUT)

test: install
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
