# dnr: two commands for a fresh machine (see README "Quick start")
#   make demo   set up .venv and run the offline demo pipeline (data: ../shared/data, else `make data` first)
#   make test   set up .venv and run every test (each chapter executed once, its docs page checked; CLI, benchmarks)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
# Every install compiles the packages' bytecode (uv's --compile-bytecode; pip does it by default): where
# PYTHONDONTWRITEBYTECODE is set (CI machines, containers) Python never writes a .pyc, and each process compiled
# torch, transformers and peft from source again on import (measured: 15 s of CPU per `import transformers, trl, peft`
# without the .pyc files, 5 s with them; the suite starts hundreds of such processes).
# The install follows requirements.lock exactly (`make lock` regenerates it from settings.ini; see README "Install").
# It pins torch's CPU build (an unpinned install pulls a ~5 GB CUDA build); its wheels come from pip's configured
# find-links when this machine has them, else from PyTorch's CPU index. See README "GPU install" for CUDA.
INSTALLER ?= uv
UV_SPEC ?= $(shell grep -oE '^uv==[^ ]+' requirements.lock)
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_FIND_LINKS ?= $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null)
TORCH_SOURCE = $(if $(TORCH_FIND_LINKS),$(addprefix --find-links ,$(TORCH_FIND_LINKS)),--extra-index-url $(TORCH_INDEX))
# uv takes a package from the first index that has it; the lock pins every version, so any index may serve it
UV_TORCH_SOURCE = $(TORCH_SOURCE) $(if $(TORCH_FIND_LINKS),,--index-strategy unsafe-best-match)
# the offline data folder beside the checkout when there is one; else what `make data` (dnr data fetch) put in the cache
export DNR_DATA_DIR ?= $(if $(wildcard ../shared/data/mmlu_pro),$(abspath ../shared/data))
export DNR_CACHE_DIR ?= $(abspath .cache)
export HF_HUB_OFFLINE = 1
export HF_DATASETS_OFFLINE = 1
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: setup lock latest-env data demo test docs clean-nbs
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.lock settings.ini setup.py
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
ifeq ($(INSTALLER),uv)
	$(VENV)/bin/pip install -q "$(UV_SPEC)"
	$(VENV)/bin/uv pip sync -q --compile-bytecode --python $(VENV)/bin/python requirements.lock $(UV_TORCH_SOURCE)
	$(VENV)/bin/uv pip install -q --python $(VENV)/bin/python --no-deps -e .
else
	$(VENV)/bin/pip install -q -U pip "$(UV_SPEC)"
	$(VENV)/bin/pip install -q --no-deps -r requirements.lock $(TORCH_SOURCE)
	$(VENV)/bin/pip install -q --no-deps -e .
endif
	touch $@

# Re-resolve the newest releases settings.ini allows into requirements.lock (commit the result with the change that needs it)
lock: setup
	DNR_TORCH_FIND_LINKS="$(TORCH_FIND_LINKS)" DNR_TORCH_INDEX="$(if $(TORCH_FIND_LINKS),,$(TORCH_INDEX))" $(VENV)/bin/python dev/lock.py

data: setup
	$(VENV)/bin/dnr data fetch

demo: setup
	$(VENV)/bin/dnr demo

test: setup
	bash dev/ensure_chromium.sh
	LATEST_PACKAGES="$(LATEST_PACKAGES)" bash dev/run_tests.sh $(VENV)

# The lock, then the newest releases settings.ini allows of the provider SDKs and the training stack (torch as locked):
# what `make test` runs the SDK and training tests in, to catch a breaking release the day it is published
LATEST_PACKAGES = openai anthropic google-genai httpx httpx2 transformers trl peft accelerate datasets
latest-env: setup
	rm -rf $(VENV)-latest && $(PYTHON) -m venv $(VENV)-latest
	$(VENV)-latest/bin/pip install -q "$(UV_SPEC)"
	$(VENV)-latest/bin/uv pip install -q --compile-bytecode --python $(VENV)-latest/bin/python -r requirements.lock $(UV_TORCH_SOURCE)
	grep -E '^torch==' requirements.lock > $(VENV)-latest/torch-constraint.txt
	$(VENV)-latest/bin/uv pip install -q --compile-bytecode --python $(VENV)-latest/bin/python -e . $(UV_TORCH_SOURCE) \
		-c $(VENV)-latest/torch-constraint.txt $(addprefix --upgrade-package ,$(LATEST_PACKAGES))

docs: setup
	$(VENV)/bin/python dev/render_docs.py

clean-nbs: setup
	$(VENV)/bin/nbdev_export && $(VENV)/bin/nbdev_clean
