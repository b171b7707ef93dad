"""The security claims of docs/failure-handling.md about the deployment, each checked: checkov's own checks for
public access and admin roles passed on the named resources, the worker's roles exactly the ones a job needs, and
private worker IPs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import hcl2
import pytest

ROOT = Path(__file__).resolve().parent.parent
TERRAFORM = ROOT / "terraform"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


def resources(name: str) -> dict[str, dict]:
    """`type.name` -> arguments, for the resources of one Terraform file (quotes as python-hcl2 keeps them)."""
    with open(TERRAFORM / name) as f:
        blocks = hcl2.load(f)["resource"]
    return {
        f"{kind.strip(chr(34))}.{label.strip(chr(34))}": body
        for block in blocks
        for kind, named in block.items()
        for label, body in named.items()
    }


@pytest.fixture(scope="module")
def passed_checks() -> set[tuple[str, str]]:
    if not CHECKOV.exists():
        pytest.skip(f"{CHECKOV} is missing: `make test` (or `make checkov`) installs it in its own virtualenv")
    done = subprocess.run(
        [str(CHECKOV), "--skip-download", "--output=json", "-d", str(TERRAFORM), "--framework=terraform"],
        capture_output=True,
        text=True,
    )
    report = json.loads(done.stdout)
    report = report[0] if isinstance(report, list) else report
    return {(check["check_id"], check["resource"]) for check in report["results"]["passed_checks"]}


@pytest.mark.parametrize(
    ("check", "resource", "claim"),
    [
        ("CKV_GCP_114", "google_storage_bucket.data", "public access prevention enforced on the bucket"),
        ("CKV_GCP_29", "google_storage_bucket.data", "uniform bucket-level access"),
        ("CKV_GCP_28", "google_storage_bucket_iam_member.worker", "the bucket is not granted to allUsers"),
        ("CKV_GCP_15", 'google_bigquery_dataset.datasets["inference"]', "the dataset is not public"),
        ("CKV_GCP_15", 'google_bigquery_dataset.datasets["temp"]', "the temp dataset is not public"),
        ("CKV_GCP_99", "google_pubsub_topic_iam_member.worker", "topics are not public"),
        ("CKV_GCP_101", "google_artifact_registry_repository_iam_member.worker", "the image repository is not public"),
    ],
)
def test_nothing_is_public(passed_checks, check, resource, claim):
    assert (check, resource) in passed_checks, claim


@pytest.mark.parametrize("role", ["roles/dataflow.worker", "roles/bigquery.jobUser", "roles/bigquery.readSessionUser"])
def test_project_roles_are_neither_basic_nor_admin_nor_impersonation(passed_checks, role):
    resource = f'google_project_iam_member.worker["{role}"]'
    for check in ("CKV_GCP_117", "CKV_GCP_42", "CKV_GCP_41", "CKV_GCP_49", "CKV_GCP_46"):
        assert (check, resource) in passed_checks, (check, role)


def test_the_worker_has_only_the_roles_a_job_needs_each_on_the_narrowest_resource():
    iam = resources("iam.tf")
    project = iam["google_project_iam_member.worker"]["for_each"]
    assert project == '${toset(["roles/dataflow.worker", "roles/bigquery.jobUser", "roles/bigquery.readSessionUser"])}'
    scoped = {
        name: body["role"].strip('"')
        for name, body in iam.items()
        if name.endswith("_iam_member.worker") and name != "google_project_iam_member.worker"
    }
    assert scoped == {
        "google_storage_bucket_iam_member.worker": "roles/storage.objectUser",
        "google_bigquery_dataset_iam_member.worker": "roles/bigquery.dataEditor",
        "google_artifact_registry_repository_iam_member.worker": "roles/artifactregistry.reader",
        "google_vertex_ai_endpoint_iam_member.worker": "roles/aiplatform.user",
        "google_pubsub_subscription_iam_member.worker": "roles/pubsub.subscriber",
        "google_pubsub_topic_iam_member.worker": "roles/pubsub.publisher",
    }, "every other role is granted on one bucket, dataset, repository, subscription or topic, not the project"
    members = {body["member"] for name, body in iam.items() if name.endswith("_iam_member.worker")}
    assert members == {"${google_service_account.worker.member}"}, "granted to the worker service account only"
    job = resources("dataflow.tf")["google_dataflow_flex_template_job.streaming"]
    assert job["service_account_email"] == "${google_service_account.worker.email}"


def test_workers_get_private_ips_when_a_subnetwork_is_given():
    job = resources("dataflow.tf")["google_dataflow_flex_template_job.streaming"]
    assert job["subnetwork"] == "${var.subnetwork}"
    assert job["ip_configuration"] == '${var.subnetwork == null ? "WORKER_IP_PUBLIC" : "WORKER_IP_PRIVATE"}'
