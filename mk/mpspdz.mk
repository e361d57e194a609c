# MP-SPDZ targets, included by the main Makefile.
#   make run-3pc-passive   Protocol 1 on replicated-ring-party.x   (Araki et al. 2016)
#   make run-3pc-active    Protocol 1 on malicious-rep-ring-party.x (Dalskov et al. 2020)
# MP-SPDZ is not part of fedsyn: build it by its own README and set MP_SPDZ_HOME
# (see docs/mp-spdz-engine.md). Output goes to $(MPSPDZ_OUT)/3pc-passive and 3pc-active.
# Without MP_SPDZ_HOME (or without the binary) the targets print what to do and
# fail: the check exits 1, so make reports "Error 1" and exits with status 2.

PYTHON         ?= .venv/bin/python
DEMO_DIR       ?= demo-out
MPSPDZ_OUT     ?= out
MPSPDZ_BINNING ?= select
MPSPDZ_TIMEOUT ?= 3600

.PHONY: mpspdz-check run-3pc-passive run-3pc-active

mpspdz-check:
	@if [ -z "$(MP_SPDZ_HOME)" ]; then \
	  echo "MP_SPDZ_HOME is not set. Build MP-SPDZ v0.4.2 outside this project by following"; \
	  echo "its README (https://github.com/data61/MP-SPDZ):"; \
	  echo "  make replicated-ring-party.x malicious-rep-ring-party.x"; \
	  echo "then: export MP_SPDZ_HOME=/path/to/MP-SPDZ  (see docs/mp-spdz-engine.md)"; \
	  exit 1; \
	fi
	@test -f "$(MP_SPDZ_HOME)/compile.py" || { echo "$(MP_SPDZ_HOME) holds no compile.py: not an MP-SPDZ directory."; exit 1; }

# $(call mpspdz_run,passive|active,binary)
define mpspdz_run
	@test -x "$(MP_SPDZ_HOME)/$(2)" || { echo "Build $(2) in $(MP_SPDZ_HOME) (make $(2), see its README)."; exit 1; }
	$(MAKE) --no-print-directory $(DEMO_DIR)/preprocessed.csv
	$(PYTHON) -m fedsyn run --engine mp-spdz --security $(1) --binning $(MPSPDZ_BINNING) \
	  --holders 3 --epsilon 10 --timeout $(MPSPDZ_TIMEOUT) \
	  -i $(DEMO_DIR)/preprocessed.csv -o $(MPSPDZ_OUT)/3pc-$(1) --overwrite
endef

run-3pc-passive: mpspdz-check
	$(call mpspdz_run,passive,replicated-ring-party.x)

run-3pc-active: mpspdz-check
	$(call mpspdz_run,active,malicious-rep-ring-party.x)
