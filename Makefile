# make demo   set up .venv, build, stylise the bundled example -> styleswap-demo.png
# make test   set up .venv, build, run the test suite
# make bench  CPU benchmark table (BENCHMARKS.md)
# make studio set up, build, start the local web page (docs/studio.md); Ctrl-C stops it
# make docs   the documentation site into build/docs (docs/development.md); fails on any warning
#
# PYTHON picks the interpreter for the venv (3.10+). FORCE_CUDA=1 compiles the CUDA kernels even
# without a visible GPU (needs nvcc and a CUDA build of torch; setup.py).

PYTHON ?= python3

# Where the project's shared folder sits beside the checkout (developers, CI), use its VGG-19
# slice instead of downloading torchvision's checkpoint; an explicit setting wins.
SHARED_VGG := ../shared/weights/vgg19_conv1_1-conv3_1_torchvision.pth
ifneq ($(wildcard $(SHARED_VGG)),)
export STYLESWAP_VGG19_WEIGHTS ?= $(abspath $(SHARED_VGG))
endif
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test bench docs studio setup clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

$(VENV)/.deps: requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -r requirements-dev.txt
	touch $@

# Rebuilt whenever a C++/CUDA source, setup.py or pyproject.toml changes. The compile is the slow
# step, so say so first: the 7 C++ files take ~6 CPU-minutes (2-core AMD EPYC, 5.7 min user+sys), so
# about 3 min on 2 idle cores with ninja running MAX_JOBS=2 compilers (much longer on a busy machine).
$(VENV)/.built: $(VENV)/.deps setup.py pyproject.toml $(shell find csrc -type f)
	@echo "make: compiling the C++ kernels (about 3 min on 2 idle cores)$(if $(filter 1,$(FORCE_CUDA)), and the CUDA kernels (nvcc: much longer),), $(if $(MAX_JOBS),MAX_JOBS=$(MAX_JOBS) jobs,one job per core: MAX_JOBS=N sets it) ..."
	$(BIN)/pip install --no-build-isolation -e .
	touch $@

# The VGG-19 weights found above (or given in STYLESWAP_VGG19_WEIGHTS) also go into the user's
# weights cache (hash checked), so that `styleswap` in the activated .venv finds them later, offline.
# That cache is OUTSIDE the checkout: ~/.cache/styleswap (or $STYLESWAP_CACHE_DIR, or
# $XDG_CACHE_HOME/styleswap); `make clean` leaves it. The install prints the file it writes (one line).
# A file that fails the check is reported and left out ("-": setup goes on).
setup: $(VENV)/.built
ifneq ($(STYLESWAP_VGG19_WEIGHTS),)
	-$(BIN)/styleswap weights install "$(STYLESWAP_VGG19_WEIGHTS)"
endif

demo: setup
	$(BIN)/styleswap demo

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/cpu_table.py

studio: setup
	$(BIN)/styleswap studio

# Sphinx 9 needs Python 3.11+. autodoc imports the package, so the extension is built first (setup).
# -W: a warning fails the build; -n: every cross-reference must resolve; a fresh build each time, so
# that a warning of an unchanged page is never hidden by the previous build's cache.
$(VENV)/.docs-deps: docs/requirements.txt | $(BIN)/python
	$(BIN)/pip install -r docs/requirements.txt
	touch $@

docs: setup $(VENV)/.docs-deps
	rm -rf build/docs
	$(BIN)/python -m sphinx -W --keep-going -n -q -c docs -b html . build/docs
	@echo "docs: open build/docs/index.html"

clean:
	rm -rf build $(VENV) styleswap_ext/_C*.so *.egg-info
