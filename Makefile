# dnr: two commands for a fresh machine (see README "Quick start")
#   make demo   set up .venv and run the offline demo pipeline (data: ../shared/data, else `make data` first)
#   make test   set up .venv and run every test (notebooks via nbdev_test, CLI and benchmarks via pytest)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
# CPU torch by default (an unpinned install pulls a ~5 GB CUDA build); see README "GPU install"
TORCH_SPEC ?= torch==2.13.0
# the offline data folder beside the checkout when there is one; else what `make data` (dnr data fetch) put in the cache
export DNR_DATA_DIR ?= $(if $(wildcard ../shared/data/mmlu_pro),$(abspath ../shared/data))
export DNR_CACHE_DIR ?= $(abspath .cache)
export HF_HUB_OFFLINE = 1
export HF_DATASETS_OFFLINE = 1
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: setup data demo test docs clean-nbs
setup: $(VENV)/.installed

$(VENV)/.installed: settings.ini setup.py
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q -e ".[dev]" "$(TORCH_SPEC)"
	touch $@

data: setup
	$(VENV)/bin/dnr data fetch

demo: setup
	$(VENV)/bin/dnr demo

test: setup
	bash dev/ensure_chromium.sh
	$(VENV)/bin/python -m pytest -n 2 --durations=15 -p no:cacheprovider tests

docs: setup
	$(VENV)/bin/python dev/render_docs.py

clean-nbs: setup
	$(VENV)/bin/nbdev_export && $(VENV)/bin/nbdev_clean
