# One obvious way in: `make demo` runs the main job, `make test` runs the test suite.
# Both create .venv on first use. torch is pinned first so that pip takes the CPU build
# instead of pulling a multi-GB CUDA build as a dependency of transformers/accelerate.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m semscale_hf.cli demo $(ARGS)

test: install
	$(PY) -m pytest

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: install
	$(PY) benchmarks/bench_scales.py --quick

clean:
	rm -rf $(VENV) build dist *.egg-info
