# esszoo: `make demo` runs the main job on built-in real data, `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The CPU build of torch 2.13.0 lies on this project's machines; elsewhere any torch >= 2.13 works.
TORCH  ?= torch==2.13.0

.PHONY: demo demo-emulator test bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

# The main job: reconstruct missing sea surface temperature (OSTIA) with partial
# convolutions, beside climatology, interpolation and iterative-EOF baselines.
demo: $(VENV)/.installed
	$(BIN)/esszoo train recipes/inpaint_ostia.yaml --overwrite

# The first example of the tour: an MLP (and a hybrid) emulating hand-written physics.
demo-emulator: $(VENV)/.installed
	$(BIN)/esszoo train recipes/emulate_precip.yaml --overwrite
	$(BIN)/esszoo train recipes/emulate_precip_hybrid.yaml --overwrite
	$(BIN)/esszoo compare runs/emulate_precip runs/emulate_precip_hybrid

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -n 2

bench: $(VENV)/.installed-test
	$(BIN)/python -m benchmarks.run_all

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache
