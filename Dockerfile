# One image is both the Flex Template launcher and the workers' SDK container (sdk_container_image), so the
# job is launched and run with exactly the same, pinned, already-installed packages. Nothing is installed at
# launch or on workers.

# The launcher binary only; pinned to a dated tag, never `latest`.
FROM gcr.io/dataflow-templates-base/python311-template-launcher-base:20240812-rc01 AS launcher

# Must be the apache-beam version pinned in requirements.txt (a test checks it).
FROM apache/beam_python3.11_sdk:2.77.0
#checkov:skip=CKV_DOCKER_2:No HEALTHCHECK: the Dataflow service supervises the launcher and the SDK harness itself and ignores Docker health checks.
#checkov:skip=CKV_DOCKER_3:No USER: Beam's SDK image and boot, which this image extends, run as root inside Dataflow's per-worker VM; isolation comes from the worker service account.

WORKDIR /template

COPY requirements.txt .
RUN pip install --no-cache-dir --require-hashes -r requirements.txt \
    && pip check

COPY pyproject.toml main.py ./
COPY transforms/ transforms/
COPY tools/ tools/
COPY schemas/bigquery/ schemas/bigquery/
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && pip check \
    && python -c "import main, transforms.pipeline"

COPY --from=launcher /opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher

ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/main.py
# No FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE or SETUP_FILE: the launcher must not pip-install at launch time,
# and with PIP_NO_DEPS nothing it might try can pull packages from the network.
ENV PIP_NO_DEPS=True

# The Beam SDK harness boot: workers start the SDK container through it; the Flex Template service runs the
# launcher binary above explicitly.
ENTRYPOINT ["/opt/apache/beam/boot"]
