# Two set-up commands for a fresh machine: `make demo` (the main job) and `make test` (the suite).
VENV ?= .venv
PYTHON ?= python3

.PHONY: demo test lint dev bench venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e ".[dev,all]" --config-settings editable_mode=strict
	touch $@

venv: $(VENV)/.installed

# Re-link the editable install after adding a module (static tools need the link tree).
dev: venv
	$(VENV)/bin/pip install -q -e ".[dev,all]" --config-settings editable_mode=strict

demo: venv
	$(VENV)/bin/ostraca demo

test: venv
	VENV=$(VENV) bash scripts/test.sh

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy tests scripts bench/bench_protocol.py bench/bench_server.py bench/bench_client.py bench/bench_cli.py bench/bench_web.py bench/bench_trainer.py bench/gpu_check.py bench/bench_publish.py bench/bench_resume.py bench/bench_crypto.py bench/bench_log.py bench/bench_scope.py
	$(VENV)/bin/mypy bench/bench_scale.py

# Ostraca against MosaicML Streaming, WebDataset, LitData and HF datasets (their own venv).
bench: venv
	$(VENV)/bin/python -m bench $(BENCH_ARGS)
