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

# The first example of the tour: networks that replace physics. First the expensive case,
# RRTMG radiation (climt), emulated and then run online in RRTMG's place for 30 days;
# then the cheap case, a hand-written condensation scheme, and its hybrid.
demo-emulator: $(VENV)/.installed
	$(BIN)/esszoo train recipes/emulate_rrtmg_lw.yaml --overwrite
	$(BIN)/esszoo train recipes/emulate_rrtmg_sw.yaml --overwrite
	$(BIN)/esszoo train recipes/emulate_rrtmg_lw_hybrid.yaml --overwrite
	$(BIN)/esszoo compare runs/emulate_rrtmg_lw runs/emulate_rrtmg_lw_hybrid
	$(BIN)/esszoo couple runs/emulate_rrtmg_lw runs/emulate_rrtmg_sw --days 30
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
