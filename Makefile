# Everything bootstraps from a bare `python3`: the venv and the install are prerequisites.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: install test demo dev bench query clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m lakehouse_dev.demo

dev: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml

bench: $(STAMP)
	$(BIN)/python -m lakehouse_dev.bench

clean:
	rm -rf .demo .bench lakehouse_data .dagster_home
