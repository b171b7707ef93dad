# The verbs of this project. `make demo` and `make test` work on a fresh clone: they build what they need.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
INSTALLED := $(VENV)/.installed
MODELS := demo/models
DATA := demo/data
DEMO_OUT := out/demo
RUN := $(PY) main.py

.PHONY: venv demo models data test lint format lock readme clean

$(INSTALLED): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements.txt -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation --editable .
	touch $@

venv: $(INSTALLED)

$(MODELS)/multiply_by_5/saved_model.pb $(MODELS)/multiply_by_10/saved_model.pb &: $(INSTALLED) tools/demo.py tools/export.py
	$(PY) -m tools.demo --what models

$(DATA)/numbers.csv: $(INSTALLED) tools/demo.py tools/convert.py
	$(PY) -m tools.demo --what data

models: $(MODELS)/multiply_by_5/saved_model.pb
data: $(DATA)/numbers.csv

demo: models data
	$(RUN) --pattern=predict --model_uris=$(MODELS)/multiply_by_5 --input=$(DATA)/numbers.tfrecord --output=$(DEMO_OUT)/predict
	$(RUN) --pattern=postprocess --model_uris=$(MODELS)/multiply_by_5 --input=$(DATA)/with_bad_records.jsonl --output=$(DEMO_OUT)/postprocess
	$(RUN) --pattern=keyed --model_uris=$(MODELS)/multiply_by_5 --input=$(DATA)/numbers.csv --output=$(DEMO_OUT)/keyed
	$(RUN) --pattern=multi_parallel --model_uris=$(MODELS)/multiply_by_5,$(MODELS)/multiply_by_10 --input=$(DATA)/numbers.csv --output=$(DEMO_OUT)/multi_parallel
	$(RUN) --pattern=multi_sequence --model_uris=$(MODELS)/multiply_by_5,$(MODELS)/multiply_by_10 --input=$(DATA)/numbers.jsonl --output=$(DEMO_OUT)/multi_sequence
	@echo "outputs and dead letters are under $(DEMO_OUT)/"

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/pytest

# Recompile the pins after editing requirements.in or requirements-dev.in.
lock: $(INSTALLED)
	$(BIN)/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links --generate-hashes --allow-unsafe -o requirements.txt requirements.in
	$(BIN)/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links --generate-hashes --allow-unsafe -o requirements-dev.txt requirements-dev.in

# Rewrite the README's parameter table from the parameter registry.
readme: $(INSTALLED)
	$(PY) -m tools.docs README.md

clean:
	rm -rf $(VENV) demo/models demo/data out .pytest_cache .ruff_cache
