"""cloudbuild.yaml: valid for Cloud Build, every substitution declared, the image it pushes the one Terraform
names by digest, no layer cache, and its check and smoke-run scripts run with a recording gcloud."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import hcl2
import pytest
import yaml

from tools.launch_local import cloud_build_step

ROOT = Path(__file__).resolve().parent.parent
BUILD = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
TEXT = (ROOT / "cloudbuild.yaml").read_text()
STEPS = {step["id"]: step for step in BUILD["steps"]}
BUILT_INS = {"PROJECT_ID", "PROJECT_NUMBER", "BUILD_ID", "LOCATION", "COMMIT_SHA", "SHORT_SHA", "REVISION_ID"}


def test_cloudbuild_matches_the_cloud_build_schema():
    check = Path(sys.executable).parent / "check-jsonschema"
    done = subprocess.run(
        [str(check), "--builtin-schema", "vendor.cloudbuild", str(ROOT / "cloudbuild.yaml")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_substitution_used_is_declared_and_every_declared_one_used():
    text = TEXT.replace("$$", "")  # $$ is a literal dollar for bash
    used = set(re.findall(r"\$\{?(\w+)\}?", text))
    declared = set(BUILD["substitutions"])
    assert used - BUILT_INS == declared
    assert all(name.startswith("_") for name in declared)


def test_build_sets_logging_machine_type_timeout_and_steps():
    assert BUILD["options"]["logging"] == "CLOUD_LOGGING_ONLY"
    assert BUILD["options"]["machineType"]
    assert BUILD["timeout"] == "3600s"
    ids = [step["id"] for step in BUILD["steps"]]
    assert ids == ["lint-and-fast-tests", "check-substitutions", "build", "push", "template-spec", "smoke-test"]
    # The checks and the tests start at once, and the image is built only once both passed.
    assert STEPS["check-substitutions"]["waitFor"] == STEPS["lint-and-fast-tests"]["waitFor"] == ["-"]
    assert set(STEPS["build"]["waitFor"]) == {"check-substitutions", "lint-and-fast-tests"}


def _normalised(path: str, names: dict[str, str]) -> str:
    for token, placeholder in names.items():
        path = path.replace(token, placeholder)
    return path


def test_the_only_tag_pushed_is_the_builds_own_into_the_repository_terraform_reads_by_digest():
    cloud_build_names = {
        "${_REGION}": "{region}",
        "$PROJECT_ID": "{project}",
        "${_REPOSITORY}": "{repository}",
        "${_IMAGE_NAME}": "{image}",
        "$BUILD_ID": "{build_id}",
    }
    assert [_normalised(image, cloud_build_names) for image in BUILD["images"]] == [
        "{region}-docker.pkg.dev/{project}/{repository}/{image}:{build_id}"
    ]
    build_args = STEPS["build"]["args"]
    assert [_normalised(arg, cloud_build_names) for arg in build_args if arg.startswith("--tag")] == [
        "--tag={region}-docker.pkg.dev/{project}/{repository}/{image}:{build_id}"
    ]
    assert "latest" not in TEXT

    with open(ROOT / "terraform" / "main.tf") as f:
        local = hcl2.load(f)["locals"][0]
    repository_path = _normalised(
        local["repository_path"].strip('"'),
        {
            "${var.region}": "{region}",
            "${var.project_id}": "{project}",
            "${google_artifact_registry_repository.images.repository_id}": "{repository}",
        },
    )
    assert repository_path == "{region}-docker.pkg.dev/{project}/{repository}"
    assert '"${local.repository_path}/${var.image_name}@${var.image_digest}"' in local["image"]
    with open(ROOT / "terraform" / "variables.tf") as f:
        variables = {name: body for entry in hcl2.load(f)["variable"] for name, body in entry.items()}
    repository = _artifact_registry_repository()
    assert repository["repository_id"] == "${var.name}"
    assert variables['"name"']["default"].strip('"') == BUILD["substitutions"]["_REPOSITORY"]
    assert variables['"image_name"']["default"].strip('"') == BUILD["substitutions"]["_IMAGE_NAME"]
    assert variables['"region"']["default"].strip('"') == BUILD["substitutions"]["_REGION"]


def _artifact_registry_repository() -> dict:
    with open(ROOT / "terraform" / "artifact_registry.tf") as f:
        return hcl2.load(f)["resource"][0]['"google_artifact_registry_repository"']['"images"']


def test_the_repository_refuses_to_move_a_tag():
    [docker_config] = _artifact_registry_repository()["docker_config"]
    assert docker_config["immutable_tags"] is True


def test_no_layer_cache_is_pulled_since_no_tag_could_name_the_previous_image():
    """The decision of issue 13 (8): `--cache-from` needs a previous image under a tag that moves, and
    BuildKit reuses nothing from it without inline cache metadata; tags here never move, so no pull step."""
    commands = [" ".join([step.get("entrypoint", ""), *step.get("args", [])]) for step in BUILD["steps"]]
    assert not [c for c in commands if "docker pull" in c or "--cache-from" in c or "BUILDKIT_INLINE_CACHE" in c]
    assert [step["id"] for step in BUILD["steps"] if step["name"] == "gcr.io/cloud-builders/docker"] == [
        "build",
        "push",
    ]
    assert "# No layer cache." in TEXT, "the build step says why it has no cache"


def test_the_smoke_runs_model_is_built_in_the_python_step_and_staged_from_there():
    assert (
        STEPS["lint-and-fast-tests"]["args"][-1]
        .rstrip()
        .endswith('if [ "${_SMOKE_TEST}" = true ]; then python -m tools.demo --dir=build/smoke --what=models; fi')
    )
    assert "gcloud storage cp --recursive build/smoke/models/multiply_by_5" in STEPS["smoke-test"]["args"][-1]


# The check-substitutions and smoke-test steps' scripts, run by bash as Cloud Build runs them (substitutions
# made by tools.launch_local.cloud_build_step), with a `gcloud` and a `sleep` on PATH that record their argv.

WORKER = "tfx-inference-worker@my-project.iam.gserviceaccount.com"
SMOKE = {
    "PROJECT_ID": "my-project",
    "BUILD_ID": "5f1c0de2-1111-4222-8333-444455556666",
    "_BUCKET": "my-project-tfx-inference",
    "_SMOKE_TEST": "true",
    "_SERVICE_ACCOUNT": WORKER,
}
PREFIX = "gs://my-project-tfx-inference/smoke/smoke-5f1c0de2-1111-4222-8333-444455556666"
IMAGE = "us-central1-docker.pkg.dev/my-project/tfx-inference/template@sha256:" + "ab" * 32
FULL_DESCRIBE = [
    "dataflow", "jobs", "describe", "2026-11-27_10_00_00-123", "--region=us-central1", "--full", "--format=json"
]  # fmt: skip


def _step(step: str, workspace: Path, substitutions: dict[str, str], env: dict[str, str] | None = None):
    # A wait that never ends calls the Python gcloud stub 90 times: minutes on a busy 2-core machine.
    return subprocess.run(
        cloud_build_step(step, substitutions), cwd=workspace, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize(
    "substitutions",
    [
        {"_BUCKET": "my-project-tfx-inference"},
        {"_BUCKET": "my-project-tfx-inference", "_SMOKE_TEST": "true", "_SERVICE_ACCOUNT": WORKER},
        {
            "_BUCKET": "b.example.com",
            "_SMOKE_TEST": "true",
            "_SERVICE_ACCOUNT": "123-compute@developer.gserviceaccount.com",
        },
    ],
    ids=["no-smoke-test", "smoke-test", "compute-default-account"],
)
def test_good_substitutions_pass_the_check(tmp_path, substitutions):
    done = _step("check-substitutions", tmp_path, {"PROJECT_ID": "my-project", **substitutions})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "substitutions checked\n"


@pytest.mark.parametrize(
    ("substitutions", "errors"),
    [
        ({}, ["_BUCKET='' is not a bucket name: give Terraform's bucket output"]),
        ({"_BUCKET": "gs://my-bucket"}, ["_BUCKET='gs://my-bucket' is not a bucket name"]),
        (
            {"_BUCKET": "b-1", "_SMOKE_TEST": "true"},
            ["_SERVICE_ACCOUNT='' is not a service account email: the smoke run's workers run as Terraform's"],
        ),
        (
            {"_BUCKET": "b-1", "_SMOKE_TEST": "true", "_SERVICE_ACCOUNT": "tfx-inference-worker"},
            ["_SERVICE_ACCOUNT='tfx-inference-worker' is not a service account email"],
        ),
        ({"_BUCKET": "b-1", "_SMOKE_TEST": "yes"}, ["_SMOKE_TEST='yes' must be true or false"]),
        (
            {"_REGION": "us central1", "_TEMPLATE_NAME": "../x"},
            [
                "_BUCKET='' is not a bucket name",
                "_REGION='us central1' is not a region such as us-central1",
                "_TEMPLATE_NAME='../x' is not a template name",
            ],
        ),
    ],
    ids=["empty-bucket", "bucket-url", "smoke-without-account", "account-not-email", "smoke-not-bool", "several"],
)
def test_bad_substitutions_fail_the_build_at_once_each_by_name(tmp_path, substitutions, errors):
    done = _step("check-substitutions", tmp_path, {"PROJECT_ID": "my-project", **substitutions})
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == len(errors) and all(line.startswith(e) for line, e in zip(lines, errors, strict=True))


STUB_GCLOUD = """\
#!{python}
# gcloud as the smoke run meets it: records argv, answers a job id, the job's states one call at a time
# (the last one repeated), the whole job for `--full --format=json` (job.json), the prediction files;
# `storage cp` fails when SMOKE_UPLOAD_FAILS is set.
import json, os, sys
from pathlib import Path

here = Path(os.environ["SMOKE_STUB"])
args = sys.argv[1:]
with open(here / "gcloud-calls.jsonl", "a") as f:
    f.write(json.dumps(args) + "\\n")
if args[:2] == ["storage", "cp"] and os.environ.get("SMOKE_UPLOAD_FAILS"):
    sys.exit("ERROR: (gcloud.storage.cp) HTTPError 403: permission denied")
if args[:3] == ["dataflow", "flex-template", "run"]:
    print("2026-11-27_10_00_00-123")
if args[:3] == ["dataflow", "jobs", "describe"] and "--full" in args:
    print((here / "job.json").read_text())
elif args[:3] == ["dataflow", "jobs", "describe"]:
    states = (here / "states").read_text().split()
    print(states[0])
    (here / "states").write_text(" ".join(states[1:] or states))
if args[:2] == ["storage", "cat"]:
    print((here / "predictions.jsonl").read_text(), end="")
"""


@pytest.fixture
def smoke(tmp_path):
    """A build workspace as the smoke step finds it (the model built, the checkout's smoke.csv), and the stubs."""
    workspace, stub = tmp_path / "workspace", tmp_path / "stub"
    (workspace / "build" / "smoke" / "models" / "multiply_by_5").mkdir(parents=True)
    (workspace / "build" / "image").write_text(IMAGE + "\n")
    (workspace / "tests" / "data").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "data" / "smoke.csv", workspace / "tests" / "data")
    stub.mkdir()
    gcloud = stub / "gcloud"
    gcloud.write_text(STUB_GCLOUD.format(python=sys.executable))
    (stub / "sleep").write_text(f'#!/usr/bin/env bash\necho "$*" >> {stub}/sleeps\n')
    for program in (gcloud, stub / "sleep"):
        program.chmod(0o755)
    env = {**os.environ, "PATH": f"{stub}{os.pathsep}{os.environ['PATH']}", "SMOKE_STUB": str(stub)}

    def run(states: str, predictions: list[dict] | None = None, workers_image: str = IMAGE, **extra_env: str):
        (stub / "states").write_text(states)
        (stub / "job.json").write_text(json.dumps(_job_with_workers_on(workers_image), indent=2))
        rows = (
            predictions
            if predictions is not None
            else _predictions({"smoke-1": 5.0, "smoke-2": 12.5, "smoke-3": -20.0})
        )
        (stub / "predictions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        done = _step("smoke-test", workspace, SMOKE, {**env, **extra_env})
        calls_file = stub / "gcloud-calls.jsonl"
        calls = [json.loads(line) for line in calls_file.read_text().splitlines()] if calls_file.exists() else []
        return done, calls

    return run


def _job_with_workers_on(image: str) -> dict:
    """A Job resource as `jobs describe --full --format=json` prints it: the Dataflow REST API's Job, whose
    environment.workerPools[].sdkHarnessContainerImages[].containerImage names each pool's SDK container."""
    containers = [{"containerImage": image, "environmentId": "e1"}] if image else []
    pool = {"kind": "harness", "sdkHarnessContainerImages": containers}
    return {
        "id": "2026-11-27_10_00_00-123",
        "currentState": "JOB_STATE_RUNNING",
        "environment": {"workerPools": [pool]},
    }


def _describes(calls: list[list[str]]) -> tuple[list[list[str]], list[list[str]]]:
    """The smoke step's `jobs describe` calls: those for the state, and those for the whole job."""
    describes = [call for call in calls if call[:3] == ["dataflow", "jobs", "describe"]]
    return [c for c in describes if "--full" not in c], [c for c in describes if "--full" in c]


def _predictions(outputs: dict[str, float]) -> list[dict]:
    inputs = {"smoke-1": 1.0, "smoke-2": 2.5, "smoke-3": -4.0}
    return [
        {"key": key, "input": {"x": inputs[key]}, "predictions": [{"model": "multiply_by_5", "outputs": {"y": [y]}}]}
        for key, y in outputs.items()
    ]


def test_the_smoke_run_stages_its_own_model_and_input_under_its_prefix_checks_5x_and_cleans_up(smoke):
    done, calls = smoke("JOB_STATE_PENDING JOB_STATE_RUNNING JOB_STATE_DONE")
    assert done.returncode == 0, done.stderr
    assert "smoke test passed: 3 rows, each 5x its input" in done.stdout
    upload_model, upload_input, run, *describes, cat, remove = calls
    states, full = _describes(describes)
    assert full == [FULL_DESCRIBE], "the workers' image is read once, from the whole job"
    assert describes.index(full[0]) == 2, "read as soon as the job runs (the second state)"
    assert f"the job's workers run {IMAGE}" in done.stdout
    assert upload_model == ["storage", "cp", "--recursive", "build/smoke/models/multiply_by_5", f"{PREFIX}/models/"]
    assert upload_input == ["storage", "cp", "tests/data/smoke.csv", f"{PREFIX}/input.csv"]
    assert run[:4] == ["dataflow", "flex-template", "run", "smoke-5f1c0de2-1111-4222-8333-444455556666"]
    flags = dict(arg[2:].split("=", 1) for arg in run[4:] if not arg.startswith("--parameters="))
    assert flags["template-file-gcs-location"] == "gs://my-project-tfx-inference/templates/tfx-inference.json"
    assert flags["service-account-email"] == WORKER
    assert (flags["temp-location"], flags["staging-location"]) == (f"{PREFIX}/temp", f"{PREFIX}/staging")
    parameters = [arg.split("=", 1)[1] for arg in run if arg.startswith("--parameters=")]
    assert parameters == [
        "pattern=keyed",
        f"model_uris={PREFIX}/models/multiply_by_5",
        f"input={PREFIX}/input.csv",
        f"output={PREFIX}/output/predictions",
        f"sdk_container_image={IMAGE}",
    ]
    assert [d[:4] for d in states] == [["dataflow", "jobs", "describe", "2026-11-27_10_00_00-123"]] * 3
    assert cat == ["storage", "cat", f"{PREFIX}/output/predictions-*.jsonl"]
    assert remove == ["storage", "rm", "--recursive", PREFIX]


@pytest.mark.parametrize(
    ("states", "predictions", "message"),
    [
        ("JOB_STATE_RUNNING JOB_STATE_FAILED", None, ""),
        ("JOB_STATE_DONE", _predictions({"smoke-1": 5.0, "smoke-2": 12.5}), "rows for keys ['smoke-1', 'smoke-2']"),
        (
            "JOB_STATE_DONE",
            _predictions({"smoke-1": 5.0, "smoke-2": 25.0, "smoke-3": -20.0}),
            "x=2.5 gave 25.0, not 5x",
        ),
    ],
    ids=["job-failed", "row-missing", "wrong-number"],
)
def test_a_failed_smoke_run_fails_the_build_and_still_removes_its_prefix(smoke, states, predictions, message):
    done, calls = smoke(states, predictions)
    assert done.returncode == 1 and message in done.stderr
    assert _describes(calls)[1] == [FULL_DESCRIBE], "each of these jobs ran, so its workers' image was checked"
    assert calls[-1] == ["storage", "rm", "--recursive", PREFIX]
    assert not [call for call in calls if call[:3] == ["dataflow", "jobs", "cancel"]], "a finished job is not cancelled"


def test_a_job_still_running_after_the_wait_is_cancelled_before_its_prefix_goes(smoke, tmp_path):
    done, calls = smoke("JOB_STATE_RUNNING")
    assert done.returncode == 1
    assert "not done after 30 minutes" in done.stderr
    assert len((tmp_path / "stub" / "sleeps").read_text().split()) == 90
    assert _describes(calls)[1] == [FULL_DESCRIBE], "checked once, not at every poll"
    assert calls[-2][:4] == ["dataflow", "jobs", "cancel", "2026-11-27_10_00_00-123"]
    assert calls[-1] == ["storage", "rm", "--recursive", PREFIX]


@pytest.mark.parametrize(
    "workers_image",
    ["apache/beam_python3.11_sdk:2.77.0", IMAGE.replace("ab" * 32, "cd" * 32), ""],
    ids=["stock-beam-image", "another-digest", "no-sdk-image"],
)
def test_workers_on_any_other_image_fail_the_build_at_once_and_the_job_is_cancelled(smoke, tmp_path, workers_image):
    done, calls = smoke("JOB_STATE_PENDING JOB_STATE_RUNNING JOB_STATE_DONE", workers_image=workers_image)
    assert done.returncode == 1
    named = [workers_image] if workers_image else "no SDK image"
    assert f"the job's workers run {named}, not the image this build pushed: {IMAGE}" in done.stderr
    assert calls[-2][:4] == ["dataflow", "jobs", "cancel", "2026-11-27_10_00_00-123"], "still running: cancelled"
    assert calls[-1] == ["storage", "rm", "--recursive", PREFIX]
    assert not [call for call in calls if call[:2] == ["storage", "cat"]], "no rows are read from a wrong image"


def test_the_smoke_steps_gcloud_calls_parse_with_the_real_gcloud():
    """`--full` is what makes `jobs describe` return the job's environment, where the workers' image is named:
    the real client's own help says so."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        pytest.skip("gcloud is not installed: its help lists the flags of `gcloud dataflow jobs describe`")
    done = subprocess.run(
        [gcloud, "dataflow", "jobs", "describe", "--help"], capture_output=True, text=True, check=True
    )
    help_text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", done.stdout).split())
    assert "[--full]" in help_text
    assert "Notable values that are only in the full view: ▪ Environment" in help_text


def test_a_failed_upload_fails_the_build_launches_nothing_and_removes_what_it_wrote(smoke):
    done, calls = smoke("JOB_STATE_DONE", SMOKE_UPLOAD_FAILS="1")
    assert done.returncode == 1 and "HTTPError 403" in done.stderr
    assert [call[:2] for call in calls] == [["storage", "cp"], ["storage", "rm"]]
    assert calls[-1] == ["storage", "rm", "--recursive", PREFIX]


def test_the_smoke_run_is_off_unless_asked(smoke, tmp_path):
    done = _step("smoke-test", tmp_path, {**SMOKE, "_SMOKE_TEST": "false"})
    assert done.returncode == 0 and done.stdout == "smoke test off (_SMOKE_TEST=true runs it)\n"
