# vanishing-depth: `make demo` runs the main job end to end, `make test` runs the tests. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0

.PHONY: install test lint demo bench clean

install: $(VENV)/.installed

# torch first, pinned: an unpinned torch would pull gigabytes of CUDA wheels (see README, Installation).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e ".[test,app,robotics]"  # the app and the ROS-bag readers are tested too
	@$(PY) -c "import importlib.util, sys; sys.exit('torchvision must not be installed (it breaks CPU torch and transformers)' if importlib.util.find_spec('torchvision') else 0)"
	touch $@

lint: install
	$(PY) -m ruff check src tests benchmarks examples scripts

test: install lint
	$(PY) -m pytest -q

demo: install
	$(VENV)/bin/vanishing-depth demo --output-dir outputs --overwrite  # re-running replaces its own demo run

bench: install
	$(PY) benchmarks/bench_forward.py

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
