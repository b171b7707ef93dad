"""cloudbuild.yaml: valid for Cloud Build, every substitution declared, and the image it pushes is the one
Terraform's template spec points at."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import hcl2
import yaml

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
    assert ids == ["check-substitutions", "lint-and-fast-tests", "build", "push", "template-spec", "smoke-test"]
    # The checks start at once and the image is built only once they and the tests passed.
    assert STEPS["check-substitutions"]["waitFor"] == ["-"]
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
