"""The `run_command` and `build_command` outputs, run as a user runs them: rendered by Terraform itself from
their templates, executed by bash with a `gcloud` on PATH that records its argv, and, for the launch, passed
on to the real gcloud, whose request lands on a loopback stand-in of the Dataflow API.

Rendering: the outputs are `templatefile(<template>, local.command_values)`. The test renders the same
templates with `terraform apply` of a provider-less configuration, with the values of a default deployment of
project my-project, written out below; it checks that Terraform evaluates `local.command_values` to exactly
these, given what the provider gives the resources it reads (a service account's email is
ACCOUNT_ID@PROJECT.iam.gserviceaccount.com, made by IAM from the two: google.cloud.iam_admin_v1 ServiceAccount)."""

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

from tools.flex_template_service import LAUNCHER_FAILED
from tools.launch_local import IMAGE

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


_RESOURCE_ATTRIBUTE = re.compile(r"\b(google_\w+)\.(\w+)\.(\w+)\b")
_LOCAL = re.compile(r"\blocal\.(\w+)")


def _outputs() -> dict:
    with open(TERRAFORM / "outputs.tf") as f:
        document = hcl2.load(f)
    return {name.strip('"'): body for entry in document["output"] for name, body in entry.items()}


def _expression(value: str) -> str:
    """An expression as python-hcl2 reads it, written back as Terraform source."""
    return value[2:-1] if value.startswith("${") and value.endswith("}") else value


def _configuration() -> tuple[dict[str, dict], dict[str, str]]:
    """Every resource body by `type.name`, and every local value's expression by name, as Terraform source."""
    resources, locals_ = {}, {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        with open(path) as f:
            document = hcl2.load(f)
        for entry in document.get("resource", []):
            for quoted_type, instances in entry.items():
                for quoted_name, body in instances.items():
                    resources[f"{quoted_type.strip(chr(34))}.{quoted_name.strip(chr(34))}"] = body
        for entry in document.get("locals", []):
            locals_.update({n: v for n, v in entry.items() if not n.startswith("__") and isinstance(v, str)})
    return resources, locals_


def _provider_gives(match: re.Match, resources: dict[str, dict]) -> str:
    """What the provider gives for `type.name.attribute` after an apply, from the resource's own arguments."""
    kind, name, attribute = match.groups()
    body = resources[f"{kind}.{name}"]
    if kind == "google_service_account" and attribute == "email":
        return f'"${{{_expression(body["account_id"])}}}@${{var.project_id}}.iam.gserviceaccount.com"'
    assert attribute in body, f"say what the provider gives for {match[0]}: it is not an argument of {kind}.{name}"
    return f"({_expression(body[attribute])})"


def command_values_as_terraform_evaluates(workdir: Path, **variables: str) -> dict:
    """`local.command_values` evaluated by Terraform with variables.tf and the local values it reads, each resource
    attribute replaced by what the provider gives for it."""
    with open(TERRAFORM / "outputs.tf") as f:
        command_values = hcl2.load(f)["locals"][0]["command_values"]
    resources, locals_ = _configuration()

    def source(value: str) -> str:
        return _RESOURCE_ATTRIBUTE.sub(lambda m: _provider_gives(m, resources), _expression(value))

    values = "\n".join(f"    {key} = {source(value)}" for key, value in command_values.items())
    needed, todo = {}, _LOCAL.findall(values)
    while todo:
        name = todo.pop()
        if name not in needed:
            needed[name] = source(locals_[name])
            todo += _LOCAL.findall(needed[name])
    local_values = "\n".join(f"  {name} = {expression}" for name, expression in needed.items())
    shutil.copy(TERRAFORM / "variables.tf", workdir)
    (workdir / "main.tf").write_text(
        f"locals {{\n{local_values}\n  command_values = {{\n{values}\n  }}\n}}\n"
        'output "command_values" {\n  value = local.command_values\n}\n'
    )
    arguments = [f"-var={name}={value}" for name, value in variables.items()]
    return json.loads(_terraform_apply(workdir, "command_values", "-json", *arguments))


def test_the_outputs_render_their_templates_with_the_values_the_test_uses(tmp_path):
    assert command_values_as_terraform_evaluates(tmp_path, project_id="my-project") == DEFAULT_DEPLOYMENT
    outputs = _outputs()
    for name in ("run_command", "build_command"):
        expected = f'${{templatefile("${{path.module}}/{name}.sh.tftpl", local.command_values)}}'
        assert outputs[name]["value"] == expected


def _terraform_apply(workdir: Path, output: str, output_format: str, *arguments: str) -> str:
    """`terraform apply` of a provider-less configuration in `workdir`, then one of its outputs."""
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not installed (Terraform >= 1.5 evaluates the outputs and renders the templates)")
    env = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull}
    apply = ["apply", "-auto-approve", "-input=false", "-no-color", *arguments]
    for args in (apply, ["output", output_format, output]):
        done = subprocess.run([terraform, f"-chdir={workdir}", *args], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
    return done.stdout


def render(template: str, values: dict, workdir: Path) -> str:
    """The template as Terraform renders it, with `values` for `local.command_values`."""
    (workdir / "values.json").write_text(json.dumps(values))
    (workdir / "main.tf").write_text(
        f'output "command" {{\n  value = templatefile("{TERRAFORM / template}", jsondecode(file("values.json")))\n}}\n'
    )
    return _terraform_apply(workdir, "command", "-raw")


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
        'if [ "$1 $2" = "storage cat" ] && [ -n "$PUBLISHED_SPEC" ]; then cat "$PUBLISHED_SPEC"; exit; fi\n'
        f'if [ -n "$FORWARD_TO_GCLOUD" ]; then exec {real} "$@"; fi\n'
    )
    stub.chmod(0o755)
    env = {
        # PYTHONPATH is the pipeline's (the emulators' start-up hook), not gcloud's: gcloud runs its own Python.
        **{name: value for name, value in os.environ.items() if name != "PYTHONPATH"},
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
    """projects.locations.flexTemplates.launch: records the request, answers with a queued job; jobs.get answers
    that job in `state`, and jobs.messages.list with the messages of a failed launch (the service's wording, see
    tools/flex_template_service.py)."""

    requests: list[tuple[str, dict]] = []
    state = "JOB_STATE_RUNNING"
    JOB = {"id": "2026-01-01_00_00_00-1", "projectId": "my-project", "location": "us-central1"}

    def _answer(self, body: dict) -> None:
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append((self.path, body))
        name = body["launchParameter"]["jobName"]
        self._answer({"job": {**self.JOB, "name": name, "currentState": "JOB_STATE_QUEUED"}})

    def do_GET(self) -> None:
        if self.path.split("?")[0].endswith("/messages"):
            log = "gs://my-project-tfx-inference/staging/template_launches/2026-01-01_00_00_00-1/console_logs"
            texts = [f"Console log from launcher will be available at {log}.", LAUNCHER_FAILED]
            messages = [
                {"id": str(i), "messageText": t, "messageImportance": "JOB_MESSAGE_ERROR"} for i, t in enumerate(texts)
            ]
            self._answer({"jobMessages": messages})
        else:
            self._answer({**self.JOB, "name": "n", "currentState": self.state})

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def dataflow_api() -> Iterator[tuple[str, list]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DataflowStandIn)
    _DataflowStandIn.requests = []
    _DataflowStandIn.state = "JOB_STATE_RUNNING"
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
    (tmp_path / "spec.json").write_text(json.dumps({"image": IMAGE}))
    env = {
        **env,
        "FORWARD_TO_GCLOUD": "1",
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_DATAFLOW": endpoint,
        "PUBLISHED_SPEC": str(tmp_path / "spec.json"),
    }

    # As the README runs it (`terraform output -raw run_command | bash`), then pasted into a shell; from the
    # repository root, where tools/await_job.sh is.
    for run in (["bash"], ["bash", "-c", printed]):
        done = subprocess.run(run, input=printed, capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        assert done.stdout == "job 2026-01-01_00_00_00-1: JOB_STATE_RUNNING\n", "it waited for the job to run"

    bucket = "gs://my-project-tfx-inference"
    launches = [argv for argv in _calls(calls) if argv[:3] == ["dataflow", "flex-template", "run"]]
    for argv, (path, body) in zip(launches, requests, strict=True):
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
            "sdk_container_image": IMAGE,
        }
        environment = launch["environment"]
        assert environment["serviceAccountEmail"] == "tfx-inference-worker@my-project.iam.gserviceaccount.com"
        assert (environment["tempLocation"], environment["stagingLocation"]) == (f"{bucket}/temp", f"{bucket}/staging")
        assert environment.get("kmsKeyName") == overrides.get("kms_key_name")
        assert environment.get("subnetwork") == overrides.get("subnetwork")
        private = "subnetwork" in overrides
        assert environment.get("ipConfiguration") == ("WORKER_IP_PRIVATE" if private else None)
    assert len(requests) == 2
    assert [argv[:2] for argv in _calls(calls)].count(["storage", "cat"]) == 2, "the image read from the spec"


def test_run_command_fails_with_the_launchers_messages_when_the_job_fails(tmp_path, recording_gcloud, dataflow_api):
    if shutil.which("gcloud") is None:
        pytest.skip("gcloud is not installed: the launch request is checked with the real client")
    env, _ = recording_gcloud
    endpoint, _ = dataflow_api
    _DataflowStandIn.state = "JOB_STATE_FAILED"
    printed = render("run_command.sh.tftpl", DEFAULT_DEPLOYMENT, tmp_path)
    (tmp_path / "spec.json").write_text(json.dumps({"image": IMAGE}))
    env = {
        **env,
        "FORWARD_TO_GCLOUD": "1",
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_DATAFLOW": endpoint,
        "PUBLISHED_SPEC": str(tmp_path / "spec.json"),
    }
    done = subprocess.run(["bash"], input=printed, capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("job 2026-01-01_00_00_00-1: JOB_STATE_FAILED\n")
    assert LAUNCHER_FAILED in done.stderr
    console_log = "gs://my-project-tfx-inference/staging/template_launches/2026-01-01_00_00_00-1/console_logs"
    assert f"--- the launcher's console log, {console_log}:" in done.stderr


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
# gcloud as the README's session meets it: records argv; configuration, launches and the job's state go on to
# the real gcloud (its requests land on the loopback Dataflow stand-in); `storage cat` answers the published spec.
{python} -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@" >> "$README_STUB/gcloud-calls.jsonl"
case "$1 $2" in
  "config set"|"dataflow flex-template"|"dataflow jobs"|"beta dataflow") exec {gcloud} "$@" ;;
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
    (workspace / "tools").mkdir()
    shutil.copy(ROOT / "tools" / "await_job.sh", workspace / "tools")
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
    assert [launch["parameters"].pop("sdk_container_image") for launch in launches] == [image] * 4
    # Each launch waited for its job to run (tools/await_job.sh), the job id gcloud printed.
    job = "2026-01-01_00_00_00-1"
    describes = [call for call in gcloud_calls if call[:3] == ["dataflow", "jobs", "describe"]]
    assert len(describes) == 4 and all(call[3] == job and "--region=us-central1" in call for call in describes)
    assert done.stdout.count(f"job {job}: JOB_STATE_RUNNING\n") == 4
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
