# End users' two commands: `make demo` and `make test`. Each works alone on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARCH   := $(shell uname -m)
# torch + a matching torchvision, as pip finds them: on x86_64 PyPI's CUDA build (5.5 GiB in the venv; it
# runs on CPUs too), on aarch64 a CPU build; override TORCH_PIN to change
ifeq ($(ARCH),aarch64)
TORCH_PIN ?= torch==2.9.1 torchvision==0.24.1
else
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
endif
# free disk the first install needs (GiB): torch's CUDA build is 5.5 GiB in the venv on x86_64, plus pip's
# unpacking; 0 skips the check
ifeq ($(ARCH),aarch64)
VENV_FREE_GB ?= 2
else
VENV_FREE_GB ?= 8
endif
DEMO_OUT ?= demo-results
PYTEST_ARGS ?=

.PHONY: venv venv-space demo test test-slow lint bench bench-gpu clean

# the first install refuses, in one line and before creating anything, a disk without room for torch
venv-space:
	@if ! ls -d $(VENV)/lib/python*/site-packages/torch >/dev/null 2>&1; then \
	  parent="$(abspath $(VENV))"; while [ ! -d "$$parent" ]; do parent=$$(dirname "$$parent"); done; \
	  free=$$(df -Pk "$$parent" | awk 'NR==2 {print int($$4 / 1048576)}'); \
	  if [ -n "$$free" ] && [ "$$free" -lt $(VENV_FREE_GB) ]; then \
	    echo "make: $$parent has $$free GiB free, installing torch into $(VENV) needs about $(VENV_FREE_GB) GiB: free some space there or set VENV=DIR on a larger disk (VENV_FREE_GB=0 skips this check)" >&2; \
	    exit 2; \
	  fi; \
	fi

$(STAMP): pyproject.toml | venv-space
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PIN)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/suite demo --out $(DEMO_OUT)

# the four linters: style, formatting, types, and the import rules of ARCHITECTURE.md
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# PYTHONFAULTHANDLER: a native crash, even at interpreter exit after pytest's own faulthandler is switched
# off, prints every thread's Python stack instead of a bare "Segmentation fault"
test: lint
	PYTHONFAULTHANDLER=1 $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: $(STAMP)
	PYTHONFAULTHANDLER=1 $(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python scripts/bench_cpu.py

# torch only, inputs made in-process: runs on a GPU machine without Ray, nibabel or submitit
bench-gpu:
	$(shell test -x $(BIN)/python && echo $(BIN)/python || echo $(PYTHON)) scripts/bench_gpu.py

clean:
	rm -rf $(DEMO_OUT) .pytest_cache .ruff_cache .mypy_cache .import_linter_cache .grimp_cache
