"""The Flex Template launch as Dataflow runs it: the real gcloud CLI, Cloud Build's template-spec step, and the
launcher's command line, against the GCS emulator and the service stand-in (tools/flex_template_service.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import emulated_environment

from tools.flex_template_service import (
    LAUNCHER_FAILED,
    FlexTemplateService,
    Job,
    configure_gcloud,
    launcher_arguments,
    launcher_from_dockerfile,
    merged_environment,
    parameter_violations,
    serve,
)
from tools.launch_local import (
    BUILD_ID,
    DIGEST,
    IMAGE,
    PATTERNS,
    PROJECT,
    REPOSITORY,
    SERVICE_ACCOUNT,
    LocalDataflow,
    cloud_build_step,
    local_dataflow,
    pattern_parameters,
    registry_docker,
    workers_images,
)
from tools.template import template_spec
from transforms.inference.model_cache import MANIFEST, stage_model

ROOT = Path(__file__).resolve().parent.parent
METADATA = json.loads((ROOT / "metadata.json").read_text())
LAUNCHER_FLAGS = (
    "--runner=DataflowRunner",
    "--project=local-project",
    "--region=us-central1",
    "--temp_location=gs://local-tfx-inference/temp",
    "--staging_location=gs://local-tfx-inference/staging",
    f"--sdk_container_image={IMAGE}",
    f"--service_account_email={SERVICE_ACCOUNT}",
)


def test_the_launcher_runs_the_dockerfiles_entry_file_with_its_environment():
    launcher = launcher_from_dockerfile(ROOT / "Dockerfile")
    assert launcher.py_file == "/template/main.py" and launcher.local_py_file == ROOT / "main.py"
    assert launcher.env["PIP_NO_DEPS"] == "True"


def test_a_dockerfile_that_would_pip_install_at_launch_is_refused(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM python:3.11-slim-bookworm\nWORKDIR /template\nCOPY main.py ./\n"
        "ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/main.py\nENV FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE=/r.txt\n"
    )
    with pytest.raises(ValueError, match="FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE: the launcher would pip-install"):
        launcher_from_dockerfile(dockerfile)


def test_declared_parameters_are_checked_as_the_service_checks_them_and_others_pass_to_the_launcher():
    good = {"pattern": "keyed", "model_uris": "gs://bucket-1/m", "input": "gs://bucket-1/in.csv"}
    assert parameter_violations(METADATA, {**good, "sdk_container_image": IMAGE, "colour": "red"}) == []
    violations = parameter_violations(METADATA, {"pattern": "sideways", "model_uris": "s3://b/m"})
    by_name = {v["parameter"]: v["description"] for v in violations}
    assert by_name["model_uris"].startswith("Parameter didn't match regex '")
    assert by_name["pattern"].startswith("Parameter value 'sideways' is not one of predict, postprocess, keyed, ")
    assert parameter_violations(METADATA, {"model_uris": "gs://bucket-1/m"}) == [
        {"parameter": "pattern", "description": "Missing required parameter"}
    ]


def test_the_requests_environment_overrides_the_specs_default():
    merged = merged_environment(
        {"sdkContainerImage": "image:1", "maxWorkers": 5}, {"maxWorkers": 10, "tempLocation": "", "network": None}
    )
    assert merged == {"sdkContainerImage": "image:1", "maxWorkers": 10}


def test_the_launcher_passes_the_parameters_and_the_services_options():
    """The real launcher's command line, as its "Executing: ..." log line is quoted in public notes (exec.go of the
    Java launcher, launching Cloud_Datastream_to_BigQuery in 2021; its options are the camelCase of Beam Python's):
    the template's parameters and `--runner=DataflowRunner --project --region --jobName --stagingLocation
    --tempLocation --serviceAccount --templateLocation=gs://BUCKET/staging/template_launches/JOB_ID/job_object`,
    in no fixed order (parameters and options interleave there), so the order is not compared."""
    arguments = launcher_arguments(
        Job("my-project", "us-central1", "keyed-1", "2026-01-01_00_00_00-1"),
        {"pattern": "keyed", "input": "gs://b/in.csv"},
        {
            "tempLocation": "gs://b/temp",
            "stagingLocation": "gs://b/staging",
            "sdkContainerImage": "image:1",
            "serviceAccountEmail": "worker@my-project.iam.gserviceaccount.com",
        },
    )
    assert sorted(arguments) == sorted(
        [
            "--pattern=keyed",
            "--input=gs://b/in.csv",
            "--runner=DataflowRunner",
            "--project=my-project",
            "--region=us-central1",
            "--job_name=keyed-1",
            "--temp_location=gs://b/temp",
            "--staging_location=gs://b/staging",
            "--sdk_container_image=image:1",
            "--service_account_email=worker@my-project.iam.gserviceaccount.com",
            "--template_location=gs://b/staging/template_launches/2026-01-01_00_00_00-1/job_object",
        ]
    )


def test_the_stand_ins_assumed_options():
    """Assumptions of the stand-in that no public source backs yet (issue 26 lists them): without a temp location the
    staging location serves, and each of additionalExperiments becomes its own --experiments."""
    arguments = launcher_arguments(
        Job("p", "r", "n", "2026-01-01_00_00_00-1"),
        {},
        {"stagingLocation": "gs://b/s", "additionalExperiments": ["a", "b"]},
    )
    assert "--temp_location=gs://b/s" in arguments
    assert [argument for argument in arguments if argument.startswith("--experiments")] == [
        "--experiments=a",
        "--experiments=b",
    ]


def test_the_template_spec_step_substitutes_as_cloud_build_does():
    command = cloud_build_step("template-spec", {"PROJECT_ID": "p", "_BUCKET": "b"})
    assert command[:4] == ["bash", "-euo", "pipefail", "-c"]
    assert "gs://b/templates/tfx-inference.json" in command[4]
    assert "${_" not in command[4] and "$PROJECT_ID" not in command[4] and "$$" not in command[4]


def _run_step(step: str, workspace: Path, bin_dir: Path, **substitutions: str) -> subprocess.CompletedProcess:
    values = {"PROJECT_ID": "local-project", "BUILD_ID": BUILD_ID, "_BUCKET": "local-tfx-inference", **substitutions}
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(cloud_build_step(step, values), cwd=workspace, env=env, capture_output=True, text=True)


def test_the_push_step_pushes_the_builds_own_tag_and_keeps_the_digest_the_registry_gave(tmp_path):
    bin_dir, calls = tmp_path / "bin", tmp_path / "docker-calls.jsonl"
    bin_dir.mkdir()
    registry_docker(bin_dir, calls=calls)
    done = _run_step("push", tmp_path, bin_dir)
    assert done.returncode == 0, done.stderr
    pushed = f"{REPOSITORY}:{BUILD_ID}"
    push, inspect = [json.loads(line) for line in calls.read_text().splitlines()]
    assert push == ["push", pushed]
    assert inspect[0] == "inspect" and inspect[-1] == pushed and "RepoDigests" in inspect[1]
    assert (tmp_path / "build" / "image").read_text() == f"{IMAGE}\n"
    assert f"pushed {IMAGE}" in done.stdout


def test_the_push_step_fails_when_docker_recorded_no_digest_of_this_repository(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # A digest of the same image in another repository only: not the one this push made.
    docker = registry_docker(bin_dir)
    docker.write_text(docker.read_text().replace('echo "${image%:*}@', 'echo "elsewhere/template@'))
    done = _run_step("push", tmp_path, bin_dir)
    assert done.returncode == 1
    assert f"docker recorded no digest of {REPOSITORY} for the push of {BUILD_ID}" in done.stderr


def test_the_spec_tool_refuses_an_image_named_by_tag(tmp_path):
    tagged = subprocess.run(
        [sys.executable, "-m", "tools.template", "spec", str(tmp_path / "spec.json"), f"--image={REPOSITORY}:v1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert tagged.returncode == 2 and not (tmp_path / "spec.json").exists()
    assert f"--image={REPOSITORY}:v1 does not name an image by digest" in tagged.stderr


@pytest.fixture(scope="module")
def dataflow(tmp_path_factory, demo_models, demo_data):
    """Emulator, stand-in and gcloud up; Cloud Build's step has published the spec; models and inputs uploaded."""
    if shutil.which("gcloud") is None:
        pytest.skip("gcloud is not installed: these tests drive the real `gcloud dataflow flex-template run`")
    folder = tmp_path_factory.mktemp("launch")
    with local_dataflow(folder) as dataflow:
        launcher_env = {
            "STORAGE_EMULATOR_HOST": dataflow.storage,
            "TFX_INFERENCE_TEST_ANONYMOUS": "1",
            "PYTHONPATH": str(ROOT / "tests" / "emulators"),
            "TFX_INFERENCE_MODEL_CACHE": str(folder / "model-cache"),
        }
        with emulated_environment(launcher_env):
            for name, path in demo_models.items():
                dataflow.upload_model(Path(path), f"models/{name}")
            bucket = dataflow.service.client.bucket(dataflow.bucket)
            for data in ("numbers.csv", "with_bad_records.jsonl"):
                bucket.blob(f"input/{data}").upload_from_filename(str(demo_data / data))
            yield dataflow


@pytest.fixture(scope="module")
def spec(dataflow) -> str:
    return dataflow.publish_spec()


def test_cloud_build_publishes_the_spec_the_service_launches(dataflow, spec):
    bucket, name = spec[5:].split("/", 1)
    published = json.loads(dataflow.service.client.bucket(bucket).blob(name).download_as_text())
    assert published == template_spec(IMAGE, METADATA)
    # By the digest the push step read back, for the launcher and the workers alike.
    assert published["defaultEnvironment"]["sdkContainerImage"] == published["image"] == f"{REPOSITORY}@{DIGEST}"


def test_models_in_the_bucket_have_folder_objects_as_the_console_makes(dataflow):
    names = [blob.name for blob in dataflow.service.client.list_blobs(dataflow.bucket, prefix="models/multiply_by_5")]
    assert "models/multiply_by_5/" in names and "models/multiply_by_5/variables/" in names


def test_staging_skips_folder_objects_and_refuses_a_folder_name_holding_bytes(dataflow, tmp_path):
    local = stage_model(f"gs://{dataflow.bucket}/models/multiply_by_5", str(tmp_path / "m5"))
    manifest = json.loads((Path(local) / MANIFEST).read_text())
    assert {"saved_model.pb", "variables/variables.index"} <= set(manifest)
    assert not [name for name in manifest if name == "" or name.endswith("/")]
    bucket = dataflow.service.client.bucket(dataflow.bucket)
    bucket.blob("models/odd/saved_model.pb").upload_from_string(b"not a model")
    bucket.blob("models/odd/variables/").upload_from_string(b"data")
    with pytest.raises(OSError, match=r"models/odd/variables/ ends in '/' but holds 4 bytes"):
        stage_model(f"gs://{dataflow.bucket}/models/odd", str(tmp_path / "odd"))


def _job_file_images(dataflow, job_file: str) -> set[str]:
    return workers_images(dataflow.service.read_job_file(job_file))


def _launch(dataflow: LocalDataflow, spec: str, job_name: str, parameters: dict[str, str]):
    """gcloud's launch, then the job once its launcher ended, as the service holds it, and that launcher's run."""
    done = dataflow.run_template(job_name, spec, parameters)
    if done.returncode != 0:
        return done, None, []
    job_id = json.loads(done.stdout)["job"]["id"]
    record = dataflow.service.settled(job_id)
    return done, record, [launch for launch in dataflow.service.launches if launch.job_id == job_id]


@pytest.mark.slow
@pytest.mark.parametrize("pattern", PATTERNS)
def test_each_pattern_launches_with_the_template_image_as_the_workers_sdk_container(dataflow, spec, pattern):
    parameters = {**pattern_parameters(pattern), "sdk_container_image": IMAGE}
    done, record, launches = _launch(dataflow, spec, f"{pattern.replace('_', '-')}-job", parameters)
    assert done.returncode == 0, done.stderr
    (launch,) = launches
    assert record.state == "JOB_STATE_RUNNING", launch.stderr
    queued = json.loads(done.stdout)["job"]
    assert queued["id"] == launch.job_id and queued["currentState"] == "JOB_STATE_QUEUED"
    assert launch.command[:2] == ("python", "/template/main.py")
    assert set(LAUNCHER_FLAGS) <= set(launch.command)
    assert f"--model_uris={parameters['model_uris']}" in launch.command, "^~^ kept the commas of model_uris"
    assert f"--template_location=gs://local-tfx-inference/staging/template_launches/{queued['id']}/job_object" in (
        launch.command
    )
    assert f"written for DataflowRunner as the job file {launch.job_file}" in launch.stdout
    assert _job_file_images(dataflow, launch.job_file) == {IMAGE}
    # As a user reads it: the job's type and its workers' image from the service, through the real gcloud.
    described = dataflow.describe(queued["id"], full=True)
    assert (described["currentState"], described["type"]) == ("JOB_STATE_RUNNING", "JOB_TYPE_BATCH")
    assert workers_images(described) == {IMAGE}


@pytest.mark.slow
def test_the_launcher_reads_only_saved_model_pb(dataflow, spec):
    done, record, _ = _launch(dataflow, spec, "keyed-cache", pattern_parameters("keyed"))
    assert done.returncode == 0 and record.state == "JOB_STATE_RUNNING", done.stderr
    cache = Path(os.environ["TFX_INFERENCE_MODEL_CACHE"])
    staged = sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file() and p.suffix != ".lock")
    assert staged and all(path.endswith("/saved_model.pb") for path in staged), staged


@pytest.mark.slow
def test_a_streaming_launch_is_a_streaming_job_as_its_job_file_says(dataflow, spec):
    parameters = {
        "pattern": "keyed",
        "model_uris": "gs://local-tfx-inference/models/multiply_by_5",
        "input_subscription": "projects/local-project/subscriptions/tfx-inference-input",
        "output_topic": "projects/local-project/topics/tfx-inference-predictions",
        "dead_letter_topic": "projects/local-project/topics/tfx-inference-dead-letters",
    }
    done, record, (launch,) = _launch(dataflow, spec, "keyed-streaming", parameters)
    assert done.returncode == 0 and record.state == "JOB_STATE_RUNNING", done.stderr + launch.stderr
    assert "type" not in json.loads(done.stdout)["job"], "the type is known only once the launcher wrote the job"
    assert dataflow.service.read_job_file(launch.job_file)["type"] == "JOB_TYPE_STREAMING"
    assert dataflow.describe(launch.job_id)["type"] == "JOB_TYPE_STREAMING"
    assert _job_file_images(dataflow, launch.job_file) == {IMAGE}


@pytest.mark.parametrize(
    ("parameters", "name", "description"),
    [
        ({"pattern": "keyed", "model_uris": "s3://bucket/m"}, "model_uris", "Parameter didn't match regex '^"),
        ({"model_uris": "gs://local-tfx-inference/m"}, "pattern", "Missing required parameter"),
        ({"pattern": "sideways", "model_uris": "gs://local-tfx-inference/m"}, "pattern", "Parameter value 'sideways'"),
    ],
    ids=["regex", "required", "enum"],
)
def test_a_bad_declared_parameter_fails_the_request_itself_before_any_job(
    dataflow, spec, parameters, name, description
):
    """As the real gcloud prints the service's refusal: the status and message, then each parameterViolation of
    the InvalidTemplateParameters detail."""
    jobs = len(dataflow.service.jobs)
    done, _, launches = _launch(dataflow, spec, "refused", parameters)
    assert done.returncode == 1 and launches == [] and len(dataflow.service.jobs) == jobs
    first, *details = done.stderr.splitlines()
    assert first == "ERROR: (gcloud.dataflow.flex-template.run) INVALID_ARGUMENT: The template parameters are invalid."
    assert details[0] == "- '@type': type.googleapis.com/google.dataflow.v1beta3.InvalidTemplateParameters"
    assert f"  - description: {description}" in "\n".join(details) and f"    parameter: {name}" in details


def _launch_that_fails(dataflow: LocalDataflow, spec: str, job_name: str, parameters: dict[str, str]):
    """A launch gcloud accepts, then tools/await_job.sh on its job, which must fail: (the job id, the wait)."""
    done = dataflow.run_template(job_name, spec, parameters)
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)["job"]["id"]
    waited = dataflow.await_job(job_id)
    assert waited.returncode == 1 and waited.stdout == "", waited.stdout
    return job_id, waited


@pytest.mark.slow
def test_a_failing_launcher_gives_a_job_that_fails_later_with_its_console_log(dataflow, spec):
    """What a user meets: gcloud launches a queued job; the job fails once main.py has failed in the launcher,
    its messages say so and where the console log is, and tools/await_job.sh shows that log, main.py's own
    error in it."""
    parameters = {**pattern_parameters("keyed"), "model_uris": "gs://local-tfx-inference/models/nothing_here"}
    job_id, waited = _launch_that_fails(dataflow, spec, "keyed-no-model", parameters)
    console_log = f"gs://local-tfx-inference/staging/template_launches/{job_id}/console_logs"
    messages = [f"Console log from launcher will be available at {console_log}.", LAUNCHER_FAILED]
    assert dataflow.job_messages(job_id) == messages
    before_log, log = waited.stderr.split(f"--- the launcher's console log, {console_log}:\n")
    assert before_log == "\n".join([f"job {job_id}: JOB_STATE_FAILED", *messages]) + "\n"
    assert "has no readable saved_model.pb" in log
    (launch,) = [launch for launch in dataflow.service.launches if launch.job_id == job_id]
    assert launch.returncode == 2 and log == launch.stdout + launch.stderr


@pytest.mark.slow
def test_await_job_returns_once_a_good_launch_runs(dataflow, spec):
    done = dataflow.run_template("keyed-awaited", spec, pattern_parameters("keyed"))
    job_id = json.loads(done.stdout)["job"]["id"]
    waited = dataflow.await_job(job_id)
    assert (waited.returncode, waited.stdout, waited.stderr) == (0, f"job {job_id}: JOB_STATE_RUNNING\n", "")


def _launcher_image(tmp_path: Path, script: str) -> Path:
    """A template image whose entry file is `script`, as a Dockerfile the stand-in reads."""
    (tmp_path / "main.py").write_text(script)
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM python:3.11-slim-bookworm\nWORKDIR /template\nCOPY main.py ./\n"
        "ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/main.py\n"
    )
    return dockerfile


@pytest.fixture
def other_launcher(dataflow, tmp_path):
    """The same bucket and spec launched through a second stand-in whose image runs another entry file."""
    servers = []

    def start(script: str, launch_timeout: float) -> LocalDataflow:
        service = FlexTemplateService(
            dataflow.storage, dockerfile=_launcher_image(tmp_path, script), launch_timeout=launch_timeout
        )
        server = serve(service)
        servers.append(server)
        env = configure_gcloud(tmp_path / "gcloud", f"http://127.0.0.1:{server.server_port}", PROJECT)
        return LocalDataflow(dataflow.storage, service, env)

    yield start
    for server in servers:
        server.shutdown()


def test_a_launcher_that_writes_no_job_file_fails_the_job_as_the_service_does(other_launcher, spec):
    standin = other_launcher("print('building nothing')\n", launch_timeout=60)
    job_id, waited = _launch_that_fails(standin, spec, "no-job-file", pattern_parameters("keyed"))
    job_file = f"gs://local-tfx-inference/staging/template_launches/{job_id}/job_object"
    assert standin.job_messages(job_id)[-1] == (
        f"Failed to read the job file : {job_file} with error message: (stand-in): "
        f"Unable to open template file: {job_file}.."
    )
    assert waited.stderr.endswith("console_logs:\nbuilding nothing\n")


def test_a_launcher_past_the_launch_timeout_is_killed_and_fails_the_job(other_launcher, spec):
    script = "import time\nprint('loading a big model', flush=True)\ntime.sleep(60)\n"
    standin = other_launcher(script, launch_timeout=3)
    job_id, waited = _launch_that_fails(standin, spec, "too-slow", pattern_parameters("keyed"))
    result = f"gs://local-tfx-inference/staging/template_launches/{job_id}/operation_result"
    assert standin.job_messages(job_id)[-1].startswith(
        f"Timeout in polling result file: {result}. Possible causes are:\n1. Your launch takes too long time to finish."
    )
    assert waited.stderr.endswith("console_logs:\nloading a big model\n")
    (launch,) = standin.service.launches
    assert launch.returncode is None


@pytest.mark.slow
def test_a_running_job_is_cancelled_by_gcloud_and_a_finished_one_refuses(dataflow, spec):
    done, record, _ = _launch(dataflow, spec, "keyed-cancel", pattern_parameters("keyed"))
    assert record.state == "JOB_STATE_RUNNING", done.stderr
    job_id = record.job.id
    cancel = ("dataflow", "jobs", "cancel", job_id, "--region=us-central1")
    assert dataflow.gcloud(*cancel).returncode == 0
    assert dataflow.describe(job_id)["currentState"] == "JOB_STATE_CANCELLED"
    # gcloud reports a refused cancel and still exits 0 (its jobs cancel prints "Failed to cancel job ...").
    again = dataflow.gcloud(*cancel)
    assert f"Failed to cancel job [{job_id}]" in again.stderr, again.stderr
    assert dataflow.describe(job_id)["currentState"] == "JOB_STATE_CANCELLED"


@pytest.mark.slow
def test_make_launch_local():
    """`make launch-local PATTERN=...` as a user runs it (the demo models and data built first if missing)."""
    if shutil.which("gcloud") is None:
        pytest.skip("gcloud is not installed: make launch-local drives the real gcloud CLI")
    # -o: the virtualenv is the one these tests run in; make must not reinstall it from here.
    command = ["make", "--no-print-directory", "-o", ".venv/.installed", "launch-local", "PATTERN=multi_sequence"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Cloud Build's template-spec step published gs://local-tfx-inference/templates/tfx-inference.json" in (
        done.stdout
    )
    assert "launcher: python /template/main.py" in done.stdout and "--pattern=multi_sequence" in done.stdout
    assert f"--sdk_container_image={IMAGE}" in done.stdout
    assert re.search(r"job \S+ \(JOB_TYPE_BATCH\) JOB_STATE_RUNNING", done.stdout)
    assert f"workers' SDK container: {IMAGE}" in done.stdout


@pytest.mark.slow
def test_make_launch_local_shows_a_failed_launch_and_the_launchers_console_log():
    if shutil.which("gcloud") is None:
        pytest.skip("gcloud is not installed: make launch-local drives the real gcloud CLI")
    missing = "gs://local-tfx-inference/models/nothing_here"
    command = ["make", "--no-print-directory", "-o", ".venv/.installed", "launch-local", "PATTERN=keyed"]
    done = subprocess.run(
        [*command, f"PARAMETERS=model_uris={missing}"], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert done.returncode != 0
    assert re.search(r"job \S+ JOB_STATE_QUEUED: the launcher runs main.py", done.stdout), "the launch returned a job"
    assert re.search(r"^job \S+: JOB_STATE_FAILED$", done.stderr, re.M)
    assert LAUNCHER_FAILED in done.stderr
    log = done.stderr.split("--- the launcher's console log, ", 1)[1]
    assert f"{missing} has no readable saved_model.pb" in log
