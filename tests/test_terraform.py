"""Terraform, checked offline with the field's own tools: fmt, checkov, and every resource type, argument and
block name against the google and google-beta provider schemas (what `terraform validate` would check)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import hcl2
import pytest

from tools.provider_schema import check_configuration, load_schemas
from transforms.parameters import PARAMETERS

ROOT = Path(__file__).resolve().parent.parent
TERRAFORM = ROOT / "terraform"
SCHEMAS = ROOT / ".tools" / "provider-schema"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


def _hcl(name: str) -> dict:
    with open(TERRAFORM / name) as f:
        return hcl2.load(f)


@pytest.fixture(scope="module")
def schemas() -> dict:
    if not SCHEMAS.is_dir():
        pytest.skip(f"{SCHEMAS} is missing: `make test` (or `make provider-schemas`) extracts it")
    return load_schemas(SCHEMAS)


def test_terraform_fmt():
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not installed (Terraform >= 1.5 runs `terraform fmt -check`)")
    done = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CLI_CONFIG_FILE": os.devnull},
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_resource_argument_and_block_exists_in_the_provider_schema(schemas):
    assert {s["version"] for s in schemas.values()} == {"8.7.0"}, "versions.tf pins ~> 8.7: check against 8.7"
    assert check_configuration(TERRAFORM, schemas) == []


def test_a_misspelt_argument_or_block_or_type_fails(schemas, tmp_path):
    (tmp_path / "bad.tf").write_text(
        (TERRAFORM / "storage.tf")
        .read_text()
        .replace("uniform_bucket_level_access", "uniform_bucket_level_acess")
        .replace("versioning {", "versionning {")
        .replace("  location                    = var.region\n", "")
        + 'resource "google_storage_bucket_objects" "misspelt" {}\n'
    )
    problems = check_configuration(tmp_path, schemas)
    assert "bad.tf: google_storage_bucket.data: no argument 'uniform_bucket_level_acess'" in problems
    assert "bad.tf: google_storage_bucket.data: no block 'versionning'" in problems
    assert "bad.tf: unknown resource type 'google_storage_bucket_objects'" in problems
    assert "bad.tf: google_storage_bucket.data: required argument 'location' is missing" in problems


def test_an_attribute_no_resource_or_data_source_exports_fails(schemas, tmp_path):
    (tmp_path / "bad.tf").write_text(
        (TERRAFORM / "kms.tf")
        .read_text()
        .replace("this[0].email_address", "this[0].email_adress")
        .replace("this[0].number}@compute-system", "this[0].project_number}@compute-system")
        .replace('"pubsub.googleapis.com"].email', '"pubsub.googleapis.com"].mail')
    )
    assert check_configuration(tmp_path, schemas) == [
        "bad.tf: data.google_storage_project_service_account.this has no attribute 'email_adress'",
        "bad.tf: google_project_service_identity.agents has no attribute 'mail'",
        "bad.tf: data.google_project.this has no attribute 'project_number'",
    ]


def test_a_resource_only_the_beta_provider_has_is_created_by_it(schemas):
    """Without `provider = google-beta`, Terraform looks for a google_project_service_identity in google and
    fails at plan."""
    beta_only = set(schemas["google-beta"]["resource"]) - set(schemas["google"]["resource"])
    for path in sorted(TERRAFORM.glob("*.tf")):
        for entry in _hcl(path.name).get("resource", []):
            for quoted_type, instances in entry.items():
                if quoted_type.strip('"') in beta_only:
                    for name, body in instances.items():
                        assert body.get("provider") == "google-beta", f"{path.name}: {quoted_type}.{name}"


def test_providers_are_pinned_to_the_checked_major():
    providers = _hcl("versions.tf")["terraform"][0]["required_providers"][0]
    assert {name: spec["version"] for name, spec in providers.items() if not name.startswith("__")} == {
        "google": '"~> 8.7"',
        "google-beta": '"~> 8.7"',
    }


def test_every_variable_is_typed_and_described():
    for entry in _hcl("variables.tf")["variable"]:
        for name, body in entry.items():
            assert "type" in body and "description" in body, name


def _checkov(*args: str) -> dict:
    if not CHECKOV.exists():
        pytest.skip(f"{CHECKOV} is missing: `make test` (or `make checkov`) installs it in its own virtualenv")
    done = subprocess.run([str(CHECKOV), "--skip-download", "--output=json", *args], capture_output=True, text=True)
    report = json.loads(done.stdout)
    return report[0] if isinstance(report, list) else report


@pytest.mark.parametrize(
    "args",
    [["-d", str(TERRAFORM), "--framework=terraform"], ["-f", str(ROOT / "Dockerfile"), "--framework=dockerfile"]],
)
def test_checkov_is_clean_and_every_skip_says_why(args):
    report = _checkov(*args)
    failed = report["results"]["failed_checks"]
    assert failed == [], [(c["check_id"], c["resource"]) for c in failed]
    for skipped in report["results"]["skipped_checks"]:
        reason = skipped["check_result"].get("suppress_comment", "")
        assert len(reason) > 30, f"{skipped['check_id']} on {skipped['resource']} is skipped without a reason"


def test_terraform_passes_only_template_parameters():
    job = _hcl("dataflow.tf")["resource"][0]['"google_dataflow_flex_template_job"']['"streaming"']
    names = {p.name for p in PARAMETERS}
    assert set(job["parameters"]) <= names
    required = {p.name for p in PARAMETERS if not p.optional}
    assert required <= set(job["parameters"])


def test_terraform_writes_no_template_spec_and_names_the_workers_image_the_spec_must_name():
    """Cloud Build's template-spec step is the spec's one writer (tests/test_launch.py runs it): a second writer
    at the same path would overwrite it. The job names image_digest's image for its workers, the image its
    precondition holds the spec to, so the workers run it whether or not the service reads the spec's."""
    for path in TERRAFORM.glob("*.tf"):
        for resource in hcl2.load(path.open()).get("resource", []):
            for body in resource.get('"google_storage_bucket_object"', {}).values():
                assert "template" not in str(body["name"]), f"{path.name} writes {body['name']}"
    job = _hcl("dataflow.tf")["resource"][0]['"google_dataflow_flex_template_job"']['"streaming"']
    assert job["container_spec_gcs_path"] == "${local.template_path}"
    assert job["sdk_container_image"] == "${local.image}"
    assert "image == local.image" in str(job["lifecycle"])
    assert "metadata.json" not in (TERRAFORM / "main.tf").read_text()


def test_bigquery_tables_read_the_pipelines_schema_files():
    tables = _hcl("bigquery.tf")["locals"][0]["tables"]
    for table in tables:
        assert (ROOT / "schemas" / "bigquery" / f"{table}.json").exists(), table
    assert "../schemas/bigquery/${each.key}.json" in (TERRAFORM / "bigquery.tf").read_text()
