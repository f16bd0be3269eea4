# Everything bootstraps from a bare `python3` (3.11 or newer): the venv and the install are prerequisites.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: install lint test demo dev dev-offline bench clean

$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is required; this is " + sys.version.split()[0] + " (set PY=python3.11)")'
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@echo ">>> Installing into $(VENV): Dagster, Polars, DuckDB, TA-Lib, ccxt and the test tools (about 150 packages)."
	@echo ">>> The first time this takes about 3 minutes (depending on the network); pip shows each package below."
	$(BIN)/python -m pip install --progress-bar on --upgrade "pip>=24"
	$(BIN)/python -m pip install --progress-bar on -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

# Style (ruff) and the import contracts (import-linter); both are configured in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m lakehouse_dev.demo

dev: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml

# The UI on the demo lake with no outside calls (local file:// mirror, REST gap-fill off); after `make demo`.
dev-offline: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m lakehouse_dev.demo.offline

bench: $(STAMP)
	$(BIN)/python -m lakehouse_dev.bench

clean:
	rm -rf .demo .bench lakehouse_data .dagster_home
