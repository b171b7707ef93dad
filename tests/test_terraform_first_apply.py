"""Terraform on a brand-new project, read as the dependency graph Terraform would build (python-hcl2): every
resource waits for the API it calls, CMEK keys are usable by every service agent before anything is encrypted,
the build runs as an account with exactly what it needs, Terraform launches no job it would launch again, and
images are named by digest. Variable checks run in Terraform itself, which needs no provider for them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import hcl2
import pytest

from tools.provider_schema import load_schemas
from tools.template import template_spec

ROOT = Path(__file__).resolve().parent.parent
TERRAFORM = ROOT / "terraform"
SCHEMAS = ROOT / ".tools" / "provider-schema"

# The API each resource or data type calls, enabled by a google_project_service of this configuration. A type
# missing here fails the test: whoever adds one says which API it needs. google_project_service_identity needs
# the service it names (and Service Usage, on in every project).
APIS_OF_TYPE: dict[str, tuple[str, ...]] = {
    "google_artifact_registry_repository": ("artifactregistry.googleapis.com",),
    "google_artifact_registry_repository_iam_member": ("artifactregistry.googleapis.com",),
    "google_bigquery_dataset": ("bigquery.googleapis.com",),
    "google_bigquery_dataset_iam_member": ("bigquery.googleapis.com",),
    "google_bigquery_table": ("bigquery.googleapis.com",),
    "data.google_bigquery_default_service_account": ("bigquery.googleapis.com",),
    "google_dataflow_flex_template_job": ("dataflow.googleapis.com", "compute.googleapis.com"),
    "google_kms_crypto_key_iam_member": ("cloudkms.googleapis.com",),
    "google_project_iam_member": ("cloudresourcemanager.googleapis.com",),
    "data.google_project": ("cloudresourcemanager.googleapis.com",),
    "google_project_service_identity": (),
    "google_pubsub_subscription": ("pubsub.googleapis.com",),
    "google_pubsub_subscription_iam_member": ("pubsub.googleapis.com",),
    "google_pubsub_topic": ("pubsub.googleapis.com",),
    "google_pubsub_topic_iam_member": ("pubsub.googleapis.com",),
    "google_service_account": ("iam.googleapis.com",),
    "google_service_account_iam_member": ("iam.googleapis.com",),
    "google_storage_bucket": ("storage.googleapis.com",),
    "google_storage_bucket_iam_member": ("storage.googleapis.com",),
    "google_storage_bucket_object": ("storage.googleapis.com",),
    "data.google_storage_bucket_object_content": ("storage.googleapis.com",),
    "data.google_storage_project_service_account": ("storage.googleapis.com",),
    "google_vertex_ai_endpoint_iam_member": ("aiplatform.googleapis.com",),
}

# The service agents that encrypt with a CMEK key for the resources here (Dataflow's job state and
# Compute Engine's worker disks included).
CMEK_AGENTS = {"storage", "bigquery", "pubsub", "artifactregistry", "dataflow", "compute"}
CMEK_MACHINERY = {
    "google_project_service.kms",
    "google_kms_crypto_key_iam_member.service_agents",
    "google_project_service_identity.agents",
    "data.google_project.this",
    "data.google_storage_project_service_account.this",
    "data.google_bigquery_default_service_account.this",
}

DIGEST = "sha256:" + "0123456789abcdef" * 4

_REFERENCE = re.compile(r"\b((?:data\.)?google(?:_[a-z0-9]+)+\.[a-z0-9_-]+)")
_LOCAL = re.compile(r"\blocal\.(\w+)")
_SERVICE = re.compile(r'"([a-z0-9-]+\.googleapis\.com)"')
_ROLE = re.compile(r'"(roles/[\w.]+)"')


@dataclass(frozen=True)
class Block:
    """A resource or data block: its address (`google_x.name`, `data.google_x.name`) and its parsed body."""

    address: str
    type: str
    body: dict

    @property
    def text(self) -> str:
        """The block's expressions as one string, for reference searches; comments left out."""
        return _strings(self.body)


def _strings(value) -> str:
    if isinstance(value, dict):
        return " ".join(_strings(v) for k, v in value.items() if not k.startswith("__"))
    if isinstance(value, list):
        return " ".join(_strings(v) for v in value)
    return str(value)


def read_configuration(directory: Path) -> tuple[dict[str, Block], dict[str, str]]:
    """Every resource and data block of `directory` by address, and every local value's expression by name."""
    blocks, locals_ = {}, {}
    for path in sorted(directory.glob("*.tf")):
        with open(path) as f:
            document = hcl2.load(f)
        for kind in ("resource", "data"):
            for entry in document.get(kind, []):
                for quoted_type, instances in entry.items():
                    block_type = quoted_type.strip('"')
                    for quoted_name, body in instances.items():
                        prefix = "data." if kind == "data" else ""
                        address = f"{prefix}{block_type}.{quoted_name.strip(chr(34))}"
                        blocks[address] = Block(address, f"{prefix}{block_type}", body)
        for entry in document.get("locals", []):
            locals_.update({name: _strings(value) for name, value in entry.items() if not name.startswith("__")})
    return blocks, locals_


def references(
    text: str, blocks: dict[str, Block], locals_: dict[str, str], seen: frozenset[str] = frozenset()
) -> set[str]:
    """The blocks an expression refers to, whatever attribute it reads, directly or through local values."""
    found = {ref for ref in _REFERENCE.findall(text) if ref in blocks}
    for name in set(_LOCAL.findall(text)) - seen:
        found |= references(locals_.get(name, ""), blocks, locals_, seen | {name})
    return found


def depends_on_graph(blocks: dict[str, Block], locals_: dict[str, str]) -> dict[str, set[str]]:
    """Each block's direct dependencies, as Terraform finds them: depends_on and every reference in its
    expressions, through local values."""
    return {address: references(block.text, blocks, locals_) - {address} for address, block in blocks.items()}


def upstream(graph: dict[str, set[str]], address: str) -> set[str]:
    """Everything `address` waits for, directly or not."""
    seen, todo = set(), [address]
    while todo:
        for dependency in graph[todo.pop()] - seen:
            seen.add(dependency)
            todo.append(dependency)
    return seen


def enabling_resources(blocks: dict[str, Block]) -> dict[str, str]:
    """The google_project_service that enables each API, by API name."""
    return {
        service: block.address
        for block in blocks.values()
        if block.type == "google_project_service"
        for service in _SERVICE.findall(block.text)
    }


def missing_api_dependencies(directory: Path) -> list[str]:
    blocks, locals_ = read_configuration(directory)
    graph = depends_on_graph(blocks, locals_)
    enabled_by = enabling_resources(blocks)
    problems = []
    for block in blocks.values():
        if block.type == "google_project_service":
            continue
        if block.type not in APIS_OF_TYPE:
            problems.append(f"{block.address}: add {block.type} and the API it calls to APIS_OF_TYPE")
            continue
        needed = APIS_OF_TYPE[block.type] or tuple(_SERVICE.findall(block.text))
        for api in needed:
            if api not in enabled_by:
                problems.append(f"{block.address} needs {api}, which no google_project_service enables")
            elif enabled_by[api] not in upstream(graph, block.address):
                problems.append(f"{block.address} needs {api} but does not wait for {enabled_by[api]}")
    return problems


@pytest.fixture(scope="module")
def configuration() -> tuple[dict[str, Block], dict[str, set[str]]]:
    blocks, locals_ = read_configuration(TERRAFORM)
    return blocks, depends_on_graph(blocks, locals_)


# 1. Ordering.


def test_every_resource_waits_for_the_api_it_calls():
    assert missing_api_dependencies(TERRAFORM) == []


def test_a_resource_that_races_its_api_is_caught(tmp_path):
    for path in TERRAFORM.glob("*.tf"):
        shutil.copy(path, tmp_path)
    iam = tmp_path / "iam.tf"
    iam.write_text(iam.read_text().replace("  depends_on   = [google_project_service.apis]\n", "", 1))
    main = tmp_path / "main.tf"
    main.write_text(main.read_text().replace('    "cloudresourcemanager.googleapis.com",\n', ""))
    problems = missing_api_dependencies(tmp_path)
    apis = "google_project_service.apis"
    assert f"google_service_account.worker needs iam.googleapis.com but does not wait for {apis}" in problems
    crm = "cloudresourcemanager.googleapis.com"
    assert f"google_project_iam_member.worker needs {crm}, which no google_project_service enables" in problems


# 2. Cloud Build's identity.


def _grants(blocks: dict[str, Block], locals_: dict[str, str], account: str) -> set[tuple[str, str, str]]:
    """(IAM resource type, role, what it is granted on) for every grant to `account`: a member or binding whose
    member(s) name the account in any form (`.member`, `"serviceAccount:${....email}"`, through a local)."""
    grants = set()
    for block in blocks.values():
        if not block.type.endswith(("_iam_member", "_iam_binding")):
            continue
        members = _strings([block.body.get("member", ""), block.body.get("members", "")])
        if account not in references(members, blocks, locals_):
            continue
        role = block.body["role"].strip('"')
        roles = _ROLE.findall(block.body.get("for_each", "")) if role == "${each.value}" else [role]
        target = next(
            (
                ref
                for key in ("bucket", "repository", "service_account_id", "crypto_key_id", "dataset_id")
                for ref in _REFERENCE.findall(str(block.body.get(key, "")))
            ),
            "project" if block.type.startswith("google_project_iam_") else "?",
        )
        grants |= {(block.type, r, target) for r in roles}
    return grants


def test_the_build_account_has_exactly_what_the_build_does():
    blocks, locals_ = read_configuration(TERRAFORM)
    assert "google_service_account.build" in blocks
    assert _grants(blocks, locals_, "google_service_account.build") == {
        ("google_project_iam_member", "roles/logging.logWriter", "project"),
        ("google_project_iam_member", "roles/dataflow.developer", "project"),
        ("google_storage_bucket_iam_member", "roles/storage.objectUser", "google_storage_bucket.data"),
        (
            "google_artifact_registry_repository_iam_member",
            "roles/artifactregistry.writer",
            "google_artifact_registry_repository.images",
        ),
        ("google_service_account_iam_member", "roles/iam.serviceAccountUser", "google_service_account.worker"),
    }


EXTRA_BUILD_GRANTS = """
resource "google_project_iam_member" "build_owns" {
  project = var.project_id
  role    = "roles/owner"
  member  = "serviceAccount:${google_service_account.build.email}"
}

locals {
  builder = "serviceAccount:${google_service_account.build.email}"
}

resource "google_project_iam_binding" "build_edits" {
  project = var.project_id
  role    = "roles/editor"
  members = [local.builder]
}
"""


def test_a_grant_naming_the_build_account_by_its_email_is_counted(tmp_path):
    for path in TERRAFORM.glob("*.tf"):
        shutil.copy(path, tmp_path)
    with open(tmp_path / "build.tf", "a") as f:
        f.write(EXTRA_BUILD_GRANTS)
    blocks, locals_ = read_configuration(tmp_path)
    grants = _grants(blocks, locals_, "google_service_account.build")
    assert {("google_project_iam_member", "roles/owner", "project")} <= grants
    assert {("google_project_iam_binding", "roles/editor", "project")} <= grants


# 3. CMEK.


def test_with_a_key_every_service_agent_may_use_it(configuration):
    blocks, _ = configuration
    grant = blocks["google_kms_crypto_key_iam_member.service_agents"].body
    assert grant["role"] == '"roles/cloudkms.cryptoKeyEncrypterDecrypter"'
    assert grant["crypto_key_id"] == "${var.kms_key_name}"
    assert grant["for_each"] == "${local.cmek_agents}"
    with open(TERRAFORM / "kms.tf") as f:
        agents = hcl2.load(f)["locals"][0]["cmek_agents"]
    assert agents.startswith("${var.kms_key_name == null ? {} : {")
    assert set(re.findall(r"[{,] ?(\w+) = ", agents)) == CMEK_AGENTS


def test_the_agents_come_from_the_providers_own_sources():
    """Storage and BigQuery name their agents through data sources; Pub/Sub and Artifact Registry through a
    generated service identity, a google-beta resource (checked against the provider schemas)."""
    if not SCHEMAS.is_dir():
        pytest.skip(f"{SCHEMAS} is missing: `make test` (or `make provider-schemas`) extracts it")
    schemas = load_schemas(SCHEMAS)
    with open(TERRAFORM / "kms.tf") as f:
        document = hcl2.load(f)
    agents = document["locals"][0]["cmek_agents"]
    assert "storage = data.google_storage_project_service_account.this[0].email_address" in agents
    assert "bigquery = data.google_bigquery_default_service_account.this[0].email" in agents
    for service in ("pubsub", "artifactregistry"):
        assert f'{service} = google_project_service_identity.agents["{service}.googleapis.com"].email' in agents
    assert "google_storage_project_service_account" in schemas["google"]["data"]
    assert "google_bigquery_default_service_account" in schemas["google"]["data"]
    assert "google_project_service_identity" not in schemas["google"]["resource"]
    assert "google_project_service_identity" in schemas["google-beta"]["resource"]
    identity = document["resource"][0]['"google_project_service_identity"']['"agents"']
    assert identity["provider"] == "google-beta"


def test_every_resource_that_takes_the_key_waits_for_the_grants(configuration):
    blocks, graph = configuration
    encrypted = [
        block.address
        for block in blocks.values()
        if "var.kms_key_name" in block.text and block.address not in CMEK_MACHINERY
    ]
    assert {"google_storage_bucket.data", "google_artifact_registry_repository.images"} <= set(encrypted)
    assert {"google_pubsub_topic.streaming", "google_bigquery_dataset.datasets"} <= set(encrypted)
    assert "google_dataflow_flex_template_job.streaming" in encrypted
    late = [a for a in encrypted if "google_kms_crypto_key_iam_member.service_agents" not in upstream(graph, a)]
    assert late == []


def test_without_a_key_no_grant_identity_or_lookup_exists(configuration):
    blocks, _ = configuration
    for address in CMEK_MACHINERY - {"google_kms_crypto_key_iam_member.service_agents"}:
        repeat = blocks[address].body.get("count") or blocks[address].body.get("for_each")
        assert "var.kms_key_name == null ?" in repeat, address


# 5. No batch job relaunched on every apply.


def test_terraform_launches_only_the_streaming_job(configuration):
    blocks, _ = configuration
    jobs = [b for b in blocks.values() if b.type.startswith("google_dataflow")]
    assert [job.address for job in jobs] == ["google_dataflow_flex_template_job.streaming"]
    job = jobs[0].body
    assert job["count"] == "${var.launch_streaming_job ? 1 : 0}"
    assert "input_subscription" in job["parameters"]
    assert not {"input", "input_table", "input_query"} & set(job["parameters"])
    assert job["on_delete"] == '"drain"'
    conditions = [p["condition"] for p in job["lifecycle"][0]["precondition"]]
    assert "${var.enable_streaming}" in conditions


def test_the_launch_variable_says_why_it_is_streaming_only():
    with open(TERRAFORM / "variables.tf") as f:
        variables = {name.strip('"'): body for entry in hcl2.load(f)["variable"] for name, body in entry.items()}
    assert "launch_job" not in variables and "job_input" not in variables
    description = variables["launch_streaming_job"]["description"]
    assert "batch job drops out of Terraform's state" in description
    assert "run_command" in description


# 6. Immutable images.


def test_the_image_is_named_by_digest_and_no_file_says_latest():
    with open(TERRAFORM / "main.tf") as f:
        image = hcl2.load(f)["locals"][0]["image"]
    assert (
        image == '${var.image_digest == null ? null : "${local.repository_path}/${var.image_name}@${var.image_digest}"}'
    )
    assert not [p.name for p in TERRAFORM.iterdir() if ":latest" in p.read_text() or '"latest"' in p.read_text()]


def _terraform() -> str:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not installed (Terraform >= 1.5 evaluates the expressions here)")
    return terraform


def _expression(value: str) -> str:
    assert value.startswith("${") and value.endswith("}"), value
    return value[2:-1]


def streaming_job_launches(spec: dict | None, image_digest: str, workdir: Path) -> bool:
    """The streaming job's image precondition, evaluated by Terraform on a spec as the build wrote it: the
    configuration's own expressions, with the spec object's content and the repository path given."""
    with open(TERRAFORM / "main.tf") as f:
        image = hcl2.load(f)["locals"][0]["image"]
    with open(TERRAFORM / "dataflow.tf") as f:
        dataflow = hcl2.load(f)
    job = dataflow["resource"][0]['"google_dataflow_flex_template_job"']['"streaming"']
    [condition] = [p["condition"] for p in job["lifecycle"][0]["precondition"] if "spec_images" in p["condition"]]
    spec_content = "one(data.google_storage_bucket_object_content.template_spec[*].content)"
    template_spec_local = dataflow["locals"][0]["template_spec"]
    assert spec_content in template_spec_local
    (workdir / "spec.json").write_text("null" if spec is None else json.dumps(spec))
    (workdir / "main.tf").write_text(
        f"""
variable "image_name" {{
  default = "template"
}}
variable "image_digest" {{
  default = "{image_digest}"
}}
locals {{
  repository_path = "us-central1-docker.pkg.dev/my-project/tfx-inference"
  image           = {_expression(image)}
  template_spec   = {_expression(template_spec_local).replace(spec_content, 'file("spec.json")')}
  spec_images     = {_expression(dataflow["locals"][0]["spec_images"])}
}}
output "launches" {{
  value = {_expression(condition)}
}}
"""
    )
    env = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull}
    terraform = _terraform()
    for args in (["apply", "-auto-approve", "-input=false", "-no-color"], ["output", "-raw", "launches"]):
        done = subprocess.run([terraform, f"-chdir={workdir}", *args], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
    return done.stdout == "true"


def test_the_streaming_job_launches_only_the_image_of_its_digest(tmp_path):
    """Terraform names the image by digest and launches only if the spec the build wrote starts the launcher
    and the workers with that very image: a spec naming a tag, another digest, or no worker image is refused."""
    job = read_configuration(TERRAFORM)[0]["google_dataflow_flex_template_job.streaming"].body
    assert job["sdk_container_image"] == "${local.image}", "the job names the very image its spec must name"
    assert "${var.image_digest != null}" in [p["condition"] for p in job["lifecycle"][0]["precondition"]]

    repository = "us-central1-docker.pkg.dev/my-project/tfx-inference/template"
    other = "sha256:" + "f" * 64
    by_digest = template_spec(f"{repository}@{DIGEST}", {})
    assert streaming_job_launches(by_digest, DIGEST, tmp_path)
    assert not streaming_job_launches(by_digest, other, tmp_path)
    assert not streaming_job_launches(template_spec(f"{repository}:latest", {}), DIGEST, tmp_path)
    assert not streaming_job_launches({**by_digest, "defaultEnvironment": {}}, DIGEST, tmp_path)
    assert not streaming_job_launches(None, DIGEST, tmp_path)


def _plan_variables(tmp_path: Path, **values: str) -> subprocess.CompletedProcess:
    """`terraform plan` of variables.tf alone: Terraform evaluates every validation, with no provider."""
    terraform = _terraform()
    shutil.copy(TERRAFORM / "variables.tf", tmp_path)
    args = [f"-var={name}={value}" for name, value in {"project_id": "my-project", **values}.items()]
    return subprocess.run(
        [terraform, f"-chdir={tmp_path}", "plan", "-input=false", "-no-color", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CLI_CONFIG_FILE": os.devnull},
    )


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("image_digest", "latest", "image_digest must be an image digest"),
        ("image_digest", "sha256:abc", "image_digest must be an image digest"),
        ("image_digest", DIGEST.upper().replace("SHA256", "sha256"), "image_digest must be an image digest"),
        ("image_name", "Template;rm", "image_name must be a Docker repository path"),
        ("subnetwork", "regions/us-central1/subnetworks/a b", "subnetwork must be regions/REGION/subnetworks/NAME"),
        ("kms_key_name", "projects/p1234/locations/l/keyRings/r/cryptoKeys/$(id)", "kms_key_name must be a full"),
    ],
)
def test_terraform_refuses_a_mutable_image_or_a_name_unsafe_in_a_command_line(tmp_path, name, value, message):
    done = _plan_variables(tmp_path, **{name: value})
    assert done.returncode != 0
    assert message in " ".join(done.stderr.split()), done.stderr


def test_every_default_passes_its_own_validation(tmp_path):
    done = _plan_variables(tmp_path)
    assert done.returncode == 0, done.stderr


def test_terraform_takes_a_digest_a_key_and_a_subnetwork(tmp_path):
    done = _plan_variables(
        tmp_path,
        image_digest=DIGEST,
        image_name="tfx/template-2",
        kms_key_name="projects/keys-project/locations/us-central1/keyRings/ring_1/cryptoKeys/key-1",
        subnetwork="https://www.googleapis.com/compute/v1/projects/host-project/regions/us-central1/subnetworks/private",
    )
    assert done.returncode == 0, done.stderr
