# fedsyn: two commands on a fresh machine --  `make demo`, then `make test`.
PYTHON_SYS ?= python3
VENV       ?= .venv
PYTHON     := $(VENV)/bin/python
DEMO_DIR   ?= demo-out
DEMO_GENES ?= 200

.PHONY: install demo demo-plaintext lint test test-fast bench clean help

help:
	@echo "make demo            install, simulate 1,089 x $(DEMO_GENES) RNA-seq counts, preprocess, run the"
	@echo "                     embedded 3-party MPC engine (rep3, 3 TLS server processes) and evaluate"
	@echo "make test            install, lint (ruff, mypy) and run the test suite"
	@echo "make lint            ruff and mypy only"
	@echo "make test-fast       the test suite without the slow and MP-SPDZ tests"
	@echo "make run-3pc-passive the demo on MP-SPDZ, passive security (needs MP_SPDZ_HOME)"
	@echo "make run-3pc-active  the demo on MP-SPDZ, active security (needs MP_SPDZ_HOME)"
	@echo "make bench           the benchmarks in benchmarks/ (minutes)"

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON_SYS) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[test]'
	@touch $@

install: $(VENV)/.installed

$(DEMO_DIR)/counts.csv: | $(VENV)/.installed
	$(PYTHON) -m fedsyn simulate --preset simulated-brca --genes 1000 --seed 7 -o $@ --overwrite

$(DEMO_DIR)/preprocessed.csv: $(DEMO_DIR)/counts.csv
	$(PYTHON) -m fedsyn preprocess -i $< -o $@ --n-genes $(DEMO_GENES) --seed 7 --overwrite

demo: $(DEMO_DIR)/preprocessed.csv
	$(PYTHON) -m fedsyn run --engine rep3 --holders 3 --epsilon 10 -i $< -o $(DEMO_DIR)/rep3 --overwrite

demo-plaintext: $(DEMO_DIR)/preprocessed.csv
	$(PYTHON) -m fedsyn run --engine plaintext --holders 3 --epsilon 10 -i $< -o $(DEMO_DIR)/plaintext --overwrite

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check fedsyn tests benchmarks
	$(VENV)/bin/mypy fedsyn

test: lint
	$(PYTHON) -m pytest -q

test-fast: $(VENV)/.installed
	$(PYTHON) -m pytest -q -m "not slow and not mpspdz"

bench: $(VENV)/.installed
	$(PYTHON) benchmarks/bench_release.py
	$(PYTHON) benchmarks/bench_rep3.py

clean:
	rm -rf $(DEMO_DIR) out .pytest_cache build *.egg-info

-include mk/mpspdz.mk
