"""The `run_command` and `build_command` outputs, run as a user runs them: rendered by Terraform itself from
their templates, executed by bash with a `gcloud` on PATH that records its argv, and, for the launch, passed
on to the real gcloud, whose request lands on a loopback stand-in of the Dataflow API.

Rendering: the outputs are `templatefile(<template>, local.command_values)`. The test renders the same
templates with `terraform apply` of a provider-less configuration, with the values the provider would give
the resources of a default deployment of project my-project (a service account's email is
ACCOUNT_ID@PROJECT.iam.gserviceaccount.com); it checks that these are the names `local.command_values` has."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import hcl2
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
TERRAFORM = ROOT / "terraform"
KEY = "projects/my-project/locations/us-central1/keyRings/ring/cryptoKeys/key"
SUBNETWORK = "regions/us-central1/subnetworks/dataflow-private"

DEFAULT_DEPLOYMENT = {
    "project": "my-project",
    "region": "us-central1",
    "name": "tfx-inference",
    "bucket": "my-project-tfx-inference",
    "repository": "tfx-inference",
    "image_name": "template",
    "template_path": "gs://my-project-tfx-inference/templates/tfx-inference.json",
    "temp_location": "gs://my-project-tfx-inference/temp",
    "staging_location": "gs://my-project-tfx-inference/staging",
    "worker_service_account": "tfx-inference-worker@my-project.iam.gserviceaccount.com",
    "build_service_account": "tfx-inference-build@my-project.iam.gserviceaccount.com",
    "kms_key_name": None,
    "subnetwork": None,
}


def _outputs() -> dict:
    with open(TERRAFORM / "outputs.tf") as f:
        document = hcl2.load(f)
    return {name.strip('"'): body for entry in document["output"] for name, body in entry.items()}


def test_the_outputs_render_their_templates_with_the_values_the_test_uses():
    with open(TERRAFORM / "outputs.tf") as f:
        values = hcl2.load(f)["locals"][0]["command_values"]
    assert set(values) == set(DEFAULT_DEPLOYMENT)
    outputs = _outputs()
    for name in ("run_command", "build_command"):
        expected = f'${{templatefile("${{path.module}}/{name}.sh.tftpl", local.command_values)}}'
        assert outputs[name]["value"] == expected


def render(template: str, values: dict, workdir: Path) -> str:
    """The template as Terraform renders it, with `values` for `local.command_values`."""
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not installed (Terraform >= 1.5 renders the command templates)")
    (workdir / "values.json").write_text(json.dumps(values))
    (workdir / "main.tf").write_text(
        f'output "command" {{\n  value = templatefile("{TERRAFORM / template}", jsondecode(file("values.json")))\n}}\n'
    )
    env = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull}
    for args in (["apply", "-auto-approve", "-input=false", "-no-color"], ["output", "-raw", "command"]):
        done = subprocess.run([terraform, f"-chdir={workdir}", *args], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def recording_gcloud(tmp_path) -> tuple[dict, Path]:
    """A `gcloud` first on PATH that appends its argv (one JSON list a line) to a file, then runs the real
    gcloud if one is installed, in a throwaway configuration with credentials off."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "gcloud-calls.jsonl"
    bin_dir.mkdir()
    real = shutil.which("gcloud") or ""
    stub = bin_dir / "gcloud"
    stub.write_text(
        "#!/usr/bin/env bash\n"
        f"{sys.executable} -c 'import json, sys; print(json.dumps(sys.argv[1:]))' \"$@\" >> {calls}\n"
        f'if [ -n "$FORWARD_TO_GCLOUD" ]; then exec {real} "$@"; fi\n'
    )
    stub.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud-config"),
        "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
    }
    return env, calls


def _calls(path: Path) -> list[list[str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class _DataflowStandIn(BaseHTTPRequestHandler):
    """projects.locations.flexTemplates.launch: records the request, answers with a job."""

    requests: list[tuple[str, dict]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append((self.path, body))
        job = {"id": "2026-01-01_00_00_00-1", "name": body["launchParameter"]["jobName"], "projectId": "my-project"}
        payload = json.dumps({"job": job}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def dataflow_api() -> Iterator[tuple[str, list]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DataflowStandIn)
    _DataflowStandIn.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", _DataflowStandIn.requests
    server.shutdown()


@pytest.mark.parametrize(
    "overrides",
    [{}, {"kms_key_name": KEY, "subnetwork": SUBNETWORK}],
    ids=["default", "cmek-and-private-workers"],
)
def test_run_command_runs_as_printed(tmp_path, recording_gcloud, dataflow_api, overrides):
    if shutil.which("gcloud") is None:
        pytest.skip("gcloud is not installed: the launch request is checked with the real client")
    env, calls = recording_gcloud
    endpoint, requests = dataflow_api
    printed = render("run_command.sh.tftpl", {**DEFAULT_DEPLOYMENT, **overrides}, tmp_path)
    env = {**env, "FORWARD_TO_GCLOUD": "1", "CLOUDSDK_API_ENDPOINT_OVERRIDES_DATAFLOW": endpoint}

    # As the README runs it (`terraform output -raw run_command | bash`), then pasted into a shell.
    for run in (["bash"], ["bash", "-c", printed]):
        done = subprocess.run(run, input=printed, capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr

    bucket = "gs://my-project-tfx-inference"
    for argv, (path, body) in zip(_calls(calls), requests, strict=True):
        assert argv[:3] == ["dataflow", "flex-template", "run"]
        job_name = argv[3]  # bash ran $(date ...) and removed the quotes
        assert re.fullmatch(r"tfx-inference-keyed-\d{8}-\d{6}", job_name), job_name
        assert path.split("?")[0] == "/v1b3/projects/my-project/locations/us-central1/flexTemplates:launch"
        launch = body["launchParameter"]
        assert launch["jobName"] == job_name
        assert launch["containerSpecGcsPath"] == f"{bucket}/templates/tfx-inference.json"
        assert launch["parameters"] == {
            "pattern": "keyed",
            "model_uris": f"{bucket}/models/multiply_by_5",
            "input": f"{bucket}/input/numbers.csv",
            "output": f"{bucket}/output/keyed",
        }
        environment = launch["environment"]
        assert environment["serviceAccountEmail"] == "tfx-inference-worker@my-project.iam.gserviceaccount.com"
        assert (environment["tempLocation"], environment["stagingLocation"]) == (f"{bucket}/temp", f"{bucket}/staging")
        assert environment.get("kmsKeyName") == overrides.get("kms_key_name")
        assert environment.get("subnetwork") == overrides.get("subnetwork")
        private = "subnetwork" in overrides
        assert environment.get("ipConfiguration") == ("WORKER_IP_PRIVATE" if private else None)
    assert len(requests) == 2


def test_build_command_runs_as_printed_as_the_build_account(tmp_path, recording_gcloud):
    env, calls = recording_gcloud
    printed = render("build_command.sh.tftpl", DEFAULT_DEPLOYMENT, tmp_path)
    env.pop("SMOKE_TEST", None)
    for smoke_test in ({}, {"SMOKE_TEST": "true"}):
        run = {**env, **smoke_test}
        done = subprocess.run(["bash"], input=printed, capture_output=True, text=True, env=run, cwd=ROOT, timeout=60)
        assert done.returncode == 0, done.stderr

    argv, with_smoke_test = _calls(calls)
    assert with_smoke_test == [arg.replace("_SMOKE_TEST=false", "_SMOKE_TEST=true") for arg in argv]
    assert argv[:2] == ["builds", "submit"] and argv[-1] == "."
    flags = dict(arg[2:].split("=", 1) for arg in argv[2:-1])
    build_account = "tfx-inference-build@my-project.iam.gserviceaccount.com"
    assert flags["service-account"] == f"projects/my-project/serviceAccounts/{build_account}"
    assert flags["project"] == "my-project" and flags["region"] == "us-central1"
    assert (ROOT / flags["config"]).is_file()
    # The source goes to the deployment's bucket, where the build account may read it, under staging/ (expired).
    assert flags["gcs-source-staging-dir"].startswith("gs://my-project-tfx-inference/staging/")

    substitutions = dict(pair.split("=", 1) for pair in flags["substitutions"].split(","))
    declared = yaml.safe_load((ROOT / flags["config"]).read_text())["substitutions"]
    assert set(substitutions) <= set(declared), "cloudbuild.yaml does not declare them all"
    must_be_given = {name for name, default in declared.items() if default == ""}
    assert must_be_given <= set(substitutions)
    assert substitutions["_BUCKET"] == "my-project-tfx-inference"
    assert substitutions["_SERVICE_ACCOUNT"] == "tfx-inference-worker@my-project.iam.gserviceaccount.com"
    assert substitutions["_REPOSITORY"] == "tfx-inference" and substitutions["_IMAGE_NAME"] == "template"
    assert substitutions["_SMOKE_TEST"] == "false"
    assert (
        f"gs://{substitutions['_BUCKET']}/templates/{substitutions['_TEMPLATE_NAME']}.json"
        == (DEFAULT_DEPLOYMENT["template_path"])
    )


def test_build_command_flags_are_gclouds(tmp_path):
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        pytest.skip("gcloud is not installed: its help lists the flags of `gcloud builds submit`")
    printed = render("build_command.sh.tftpl", DEFAULT_DEPLOYMENT, tmp_path)
    env = {**os.environ, "CLOUDSDK_CONFIG": str(tmp_path / "gcloud-config"), "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
    manual = subprocess.run(
        [gcloud, "builds", "submit", "--help"], capture_output=True, text=True, env={**env, "PAGER": "cat"}
    ).stdout
    used = {word.split("=")[0] for word in printed.split() if word.startswith("--")}
    assert used == {
        "--project",
        "--region",
        "--config",
        "--service-account",
        "--gcs-source-staging-dir",
        "--substitutions",
    }
    manual = re.sub(r"\x1b\[[0-9;]*m", "", manual)
    assert [flag for flag in used if not re.search(rf"{flag}\b", manual)] == []


# The README's deploy section, typed as a new user types it.

TERRAFORM_STUB = """\
#!{python}
# terraform as the README's session meets it after an apply: records argv and the *.tfvars each apply reads,
# prints the outputs of a default deployment of my-project.
import json, os, sys
from pathlib import Path

here = Path(os.environ["README_STUB"])
args = sys.argv[1:]
if args[:1] != ["-chdir=terraform"]:
    sys.exit(f"terraform {{args}}: the README runs terraform on terraform/ from the repository root")
tfvars = {{path.name: path.read_text() for path in sorted(Path("terraform").glob("*.tfvars"))}}
with open(here / "terraform-calls.jsonl", "a") as f:
    f.write(json.dumps({{"args": args[1:], "tfvars": tfvars}}) + "\\n")
outputs = json.loads((here / "outputs.json").read_text())
command = args[1:]
if command[:2] == ["output", "-raw"]:
    print(outputs[command[2]], end="")
elif command[:2] == ["output", "-json"]:
    print(json.dumps(outputs[command[2]]))
elif command[0] not in ("init", "apply", "destroy"):
    sys.exit(f"terraform {{command}}: not a command the README runs")
"""

GCLOUD_STUB = """\
#!/usr/bin/env bash
# gcloud as the README's session meets it: records argv; configuration and launches go on to the real gcloud
# (its launch request lands on the loopback Dataflow stand-in); `storage cat` answers the published spec.
{python} -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@" >> "$README_STUB/gcloud-calls.jsonl"
case "$1 $2" in
  "config set"|"dataflow flex-template") exec {gcloud} "$@" ;;
  "storage cat") cat "$README_STUB/spec.json" ;;
esac
"""


def readme_deploy_session() -> str:
    """Every ```bash block of docs/deploy.md, the README's "Deploy to Dataflow" page, in order."""
    page = (ROOT / "docs" / "deploy.md").read_text()
    return "".join(re.findall(r"^```bash\n(.*?)^```$", page, re.S | re.M))


def test_the_readme_deploy_section_runs_as_typed(tmp_path, dataflow_api):
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        pytest.skip("gcloud is not installed: the README's launches are checked with the real client")
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed: the README reads the digest and the table ids with it")
    endpoint, requests = dataflow_api
    bucket = "gs://my-project-tfx-inference"
    digest = "sha256:" + "5e" * 32
    image = f"us-central1-docker.pkg.dev/my-project/tfx-inference/template@{digest}"
    stub, workspace = tmp_path / "stub", tmp_path / "checkout"
    for folder in (stub, workspace / "terraform", tmp_path / "build", tmp_path / "run"):
        folder.mkdir(parents=True)
    example = (TERRAFORM / "terraform.tfvars.example").read_text()
    (workspace / "terraform" / "terraform.tfvars.example").write_text(example)
    outputs = {
        "bucket": "my-project-tfx-inference",
        "template_spec_path": DEFAULT_DEPLOYMENT["template_path"],
        "service_account_email": DEFAULT_DEPLOYMENT["worker_service_account"],
        "tables": {role: f"my-project:inference.{role}" for role in ("keyed_input", "predictions", "dead_letters")},
        "build_command": render("build_command.sh.tftpl", DEFAULT_DEPLOYMENT, tmp_path / "build"),
        "run_command": render("run_command.sh.tftpl", DEFAULT_DEPLOYMENT, tmp_path / "run"),
    }
    (stub / "outputs.json").write_text(json.dumps(outputs))
    (stub / "spec.json").write_text(json.dumps({"image": image, "defaultEnvironment": {"sdkContainerImage": image}}))
    programs = {
        "terraform": TERRAFORM_STUB.format(python=sys.executable),
        "gcloud": GCLOUD_STUB.format(python=sys.executable, gcloud=gcloud),
        "make": f'#!/usr/bin/env bash\necho "$*" >> {stub}/make-calls\n',
    }
    for name, text in programs.items():
        (stub / name).write_text(text)
        (stub / name).chmod(0o755)
    env = {
        **{name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "SMOKE_TEST")},
        "PATH": f"{stub}{os.pathsep}{os.environ['PATH']}",
        "README_STUB": str(stub),
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud-config"),
        "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_DATAFLOW": endpoint,
    }
    # The user's project where the README has its placeholder; every output stays my-project's, so the
    # project typed is seen only where the README itself puts it.
    session = readme_deploy_session()
    assert session.startswith("PROJECT_ID=my-project ")
    session = session.replace("PROJECT_ID=my-project", "PROJECT_ID=tfx-demo-4711", 1)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", session], cwd=workspace, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr

    # 1. The one edit: project_id.
    tfvars = (workspace / "terraform" / "terraform.tfvars").read_text()
    assert tfvars == example.replace('project_id = "my-project"', 'project_id = "tfx-demo-4711"')
    terraform_calls = [json.loads(line) for line in (stub / "terraform-calls.jsonl").read_text().splitlines()]
    changes = [call for call in terraform_calls if call["args"][0] != "output"]
    assert [call["args"] for call in changes] == [
        ["init"],
        ["apply"],
        ["apply"],
        ["apply", "-var=deletion_protection=false"],
        ["destroy"],
    ]
    assert set(changes[1]["tfvars"]) == {"terraform.tfvars"}
    # 4. The streaming apply reads the digest of the published spec.
    streaming = hcl2.loads(changes[2]["tfvars"]["streaming.auto.tfvars"])
    assert streaming == {"enable_streaming": True, "launch_streaming_job": True, "image_digest": f'"{digest}"'}

    gcloud_calls = [json.loads(line) for line in (stub / "gcloud-calls.jsonl").read_text().splitlines()]
    assert gcloud_calls[0] == ["config", "set", "project", "tfx-demo-4711"]
    # 2. The build, as the build account, with the smoke run.
    [build] = [call for call in gcloud_calls if call[:2] == ["builds", "submit"]]
    assert (
        "--service-account=projects/my-project/serviceAccounts/tfx-inference-build@my-project.iam.gserviceaccount.com"
        in build
    )
    assert any(arg.startswith("--substitutions=") and arg.endswith(",_SMOKE_TEST=true") for arg in build)
    # 3. The demo assets uploaded where run_command and the streaming job look for them.
    assert (stub / "make-calls").read_text() == "models data\n"
    assert ["storage", "rsync", "--recursive", "demo/models", f"{bucket}/models"] in gcloud_calls
    assert ["storage", "cp", "demo/data/numbers.csv", f"{bucket}/input/"] in gcloud_calls
    assert ["storage", "cat", f"{bucket}/templates/tfx-inference.json"] in gcloud_calls
    assert gcloud_calls[-1] == ["storage", "rm", "--recursive", f"{bucket}/**"]

    launches = [body["launchParameter"] for _, body in requests]
    assert [launch["containerSpecGcsPath"] for launch in launches] == [f"{bucket}/templates/tfx-inference.json"] * 4
    assert [launch["parameters"] for launch in launches] == [
        {
            "pattern": "keyed",
            "model_uris": f"{bucket}/models/multiply_by_5",
            "input": f"{bucket}/input/numbers.csv",
            "output": f"{bucket}/output/keyed",
        }
    ] * 2 + [
        {
            "pattern": "multi_sequence",
            "model_uris": f"{bucket}/models/multiply_by_5,{bucket}/models/multiply_by_10",
            "input": f"{bucket}/input/numbers.csv",
            "output": f"{bucket}/output/multi_sequence",
        },
        {
            "pattern": "keyed",
            "model_uris": f"{bucket}/models/multiply_by_5",
            "input_table": "my-project:inference.keyed_input",
            "output_table": "my-project:inference.predictions",
            "dead_letter_table": "my-project:inference.dead_letters",
        },
    ]
    for launch in launches:
        environment = launch["environment"]
        assert environment["serviceAccountEmail"] == "tfx-inference-worker@my-project.iam.gserviceaccount.com"
        assert environment["tempLocation"] == f"{bucket}/temp"
