# One image is both the Flex Template launcher and the workers' SDK container (sdk_container_image), so the
# job is launched and run with exactly the same, pinned, already-installed packages. Nothing is installed at
# launch or on workers.

# The launcher binary only; pinned to a dated tag, never `latest`.
FROM gcr.io/dataflow-templates-base/python311-template-launcher-base:20240812-rc01 AS launcher

# Beam's SDK harness boot only, from the SDK image of the apache-beam version pinned in requirements.txt (a test
# checks it). Its Python packages stay behind: that image preinstalls its own set (scipy, pandas, test tools...).
FROM apache/beam_python3.11_sdk:2.77.0 AS beam

# A plain Python, the one Cloud Build's tests run on, so the installed set is the lock and nothing else.
FROM python:3.11-slim-bookworm
#checkov:skip=CKV_DOCKER_2:No HEALTHCHECK: the Dataflow service supervises the launcher and the SDK harness itself and ignores Docker health checks.
#checkov:skip=CKV_DOCKER_3:No USER: Beam's SDK harness boot runs as root inside Dataflow's per-worker VM, as in Beam's own SDK images; isolation comes from the worker service account.

WORKDIR /template

# The installer is the pinned uv of requirements/uv.txt, as in every virtualenv and in Cloud Build's tests, so the
# image, CI and a laptop install the lock the same way whatever pip the base image bundles; uv leaves once the
# project is in. Its --compile-bytecode writes the .pyc files into the image: each worker's SDK processes then
# start without compiling TensorFlow's and Beam's sources first (about 8 s of CPU each).
COPY requirements.txt .
COPY requirements/uv.txt requirements/uv.txt
RUN pip install --no-cache-dir --require-hashes -r requirements/uv.txt \
    && uv pip install --system --no-cache --compile-bytecode --require-hashes --build-constraints requirements.txt \
    -r requirements.txt

COPY pyproject.toml main.py ./
COPY transforms/ transforms/
COPY tools/ tools/
COPY schemas/bigquery/ schemas/bigquery/
# The build fails unless the installed set is exactly the lock (plus pip and this package) and consistent.
RUN uv pip install --system --no-cache --no-deps --no-build-isolation . \
    && pip uninstall --yes uv \
    && pip check \
    && python -m tools.check_lock requirements.txt --allow tfx-inference-template \
    && python -c "import main, transforms.pipeline"

# Custom base image, Beam's documented way: the SDK harness boot copied from the SDK image of the same version.
COPY --from=beam /opt/apache/beam /opt/apache/beam
COPY --from=launcher /opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher

ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/main.py
# No FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE or SETUP_FILE: the launcher must not pip-install at launch time,
# and with PIP_NO_DEPS nothing it might try can pull packages from the network.
ENV PIP_NO_DEPS=True

# The Beam SDK harness boot: workers start the SDK container through it; the Flex Template service runs the
# launcher binary above explicitly.
ENTRYPOINT ["/opt/apache/beam/boot"]
