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


def test_build_sets_logging_machine_type_timeout_and_images():
    assert BUILD["options"]["logging"] == "CLOUD_LOGGING_ONLY"
    assert BUILD["options"]["machineType"]
    assert BUILD["timeout"] == "3600s"
    ids = [step["id"] for step in BUILD["steps"]]
    assert ids == ["lint-and-fast-tests", "pull-cache", "build", "push", "template-spec", "smoke-test"]


def _normalised(path: str, names: dict[str, str]) -> str:
    for token, placeholder in names.items():
        path = path.replace(token, placeholder)
    return path


def test_the_image_cloud_build_pushes_is_the_one_terraform_expects():
    pushed = {
        _normalised(
            image,
            {
                "${_REGION}": "{region}",
                "$PROJECT_ID": "{project}",
                "${_REPOSITORY}": "{repository}",
                "${_IMAGE_NAME}": "{image}",
                "${_TAG}": "{tag}",
            },
        )
        for image in BUILD["images"]
    }
    with open(ROOT / "terraform" / "main.tf") as f:
        local = hcl2.load(f)["locals"][0]
    expected = _normalised(
        local["repository_path"].strip('"') + "/${var.image_name}:${var.image_tag}",
        {
            "${var.region}": "{region}",
            "${var.project_id}": "{project}",
            "${google_artifact_registry_repository.images.repository_id}": "{repository}",
            "${var.image_name}": "{image}",
            "${var.image_tag}": "{tag}",
        },
    )
    assert expected == "{region}-docker.pkg.dev/{project}/{repository}/{image}:{tag}"
    assert expected in pushed
    with open(ROOT / "terraform" / "variables.tf") as f:
        variables = {name: body for entry in hcl2.load(f)["variable"] for name, body in entry.items()}
    with open(ROOT / "terraform" / "artifact_registry.tf") as f:
        repository = hcl2.load(f)["resource"][0]['"google_artifact_registry_repository"']['"images"']
    assert repository["repository_id"] == "${var.name}"
    assert variables['"name"']["default"].strip('"') == BUILD["substitutions"]["_REPOSITORY"]
    assert variables['"image_name"']["default"].strip('"') == BUILD["substitutions"]["_IMAGE_NAME"]
    assert variables['"region"']["default"].strip('"') == BUILD["substitutions"]["_REGION"]
