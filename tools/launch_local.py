"""`make launch-local`: one pattern launched offline exactly as Dataflow launches it, until its job runs or fails.

The GCS emulator holds the bucket; Cloud Build's own `push` step (with a stand-in `docker` that answers as the
registry would) and `template-spec` step publish the spec there, naming the image by digest; the demo
models are uploaded with the "folder" objects the Cloud Console makes; the real `gcloud dataflow flex-template
run` launches the pattern through the Flex Template service stand-in (tools/flex_template_service.py), which
queues the job and then runs main.py as the launcher does. tools/await_job.sh waits for the job as a user would.
Printed: the job, the launcher's command line and the SDK container the job's workers start; or, when the
launch fails, the job's messages and the launcher's console log.

    python -m tools.launch_local --pattern=multi_sequence [--parameter=model_uris=gs://...]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from tools.flex_template_service import FlexTemplateService, configure_gcloud, serve

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "local-project"
REGION = "us-central1"
BUCKET = "local-tfx-inference"
BUILD_ID = "00000000-0000-4000-8000-000000000000"
# Where cloudbuild.yaml pushes with its default _REPOSITORY and _IMAGE_NAME, in this project and region, and the
# digest the stand-in registry gives every push.
REPOSITORY = f"{REGION}-docker.pkg.dev/{PROJECT}/tfx-inference/template"
DIGEST = "sha256:" + hashlib.sha256(b"tfx-inference local build").hexdigest()
IMAGE = f"{REPOSITORY}@{DIGEST}"
SERVICE_ACCOUNT = f"tfx-inference-worker@{PROJECT}.iam.gserviceaccount.com"
PATTERNS = ("predict", "postprocess", "keyed", "multi_parallel", "multi_sequence")


def cloud_build_step(
    step_id: str, substitutions: Mapping[str, str], build: Path = ROOT / "cloudbuild.yaml"
) -> list[str]:
    """The command line of one cloudbuild.yaml step, its substitutions made as Cloud Build makes them."""
    config = yaml.safe_load(build.read_text())
    step = next((s for s in config["steps"] if s.get("id") == step_id), None)
    if step is None:
        raise KeyError(f"{build} has no step {step_id!r}")
    if "entrypoint" not in step:
        raise ValueError(f"step {step_id} runs its builder image's own entrypoint, which only Cloud Build has")
    values = {**config.get("substitutions", {}), **substitutions}

    def substitute(text: str) -> str:
        def value(match: re.Match) -> str:
            name = match.group(1) or match.group(2)
            if name not in values:
                raise KeyError(f"step {step_id} uses ${name}, which has no value")
            return values[name]

        parts = text.split("$$")  # $$ is a literal $ for the step's own shell
        return "$".join(re.sub(r"\$\{(\w+)\}|\$(\w+)", value, part) for part in parts)

    return [substitute(step["entrypoint"]), *(substitute(arg) for arg in step["args"])]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def storage_emulator(log: Path) -> Iterator[str]:
    """gcp-storage-emulator in memory on a loopback port (in memory: a folder object and a file under it can
    coexist there, as in Cloud Storage, not on the emulator's disk)."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "gcp-storage-emulator"), "start", "--host=127.0.0.1"]
    command += [f"--port={port}", "--in-memory"]
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not _listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gcp-storage-emulator did not start; see {log}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


@dataclass(frozen=True)
class LocalDataflow:
    """A running GCS emulator and Flex Template service stand-in, and gcloud configured to use both."""

    storage: str
    service: FlexTemplateService
    gcloud_env: dict[str, str]
    bucket: str = BUCKET

    def gcloud(self, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
        return subprocess.run(["gcloud", *args], env=self.gcloud_env, capture_output=True, text=True, timeout=timeout)

    def publish_spec(self, template: str = "tfx-inference") -> str:
        """Cloud Build's push and template-spec steps, run as Cloud Build runs them; returns the spec's gs:// path."""
        substitutions = {
            "PROJECT_ID": PROJECT,
            "BUILD_ID": BUILD_ID,
            "_BUCKET": self.bucket,
            "_TEMPLATE_NAME": template,
        }
        with tempfile.TemporaryDirectory(prefix="cloud-build-") as workspace:
            # Cloud Build runs the steps in a checkout of the repository, in images without the project's packages.
            shutil.copytree(ROOT / "tools", Path(workspace) / "tools")
            shutil.copy(ROOT / "metadata.json", workspace)
            env = step_environment(self.gcloud_env, Path(workspace))
            for step in ("push", "template-spec"):
                command = cloud_build_step(step, substitutions)
                done = subprocess.run(command, cwd=workspace, env=env, capture_output=True, text=True)
                if done.returncode != 0:
                    raise RuntimeError(f"the {step} step failed:\n{done.stdout}{done.stderr}")
        return f"gs://{self.bucket}/templates/{template}.json"

    def upload_model(self, local: Path, prefix: str) -> None:
        """A model folder as the Cloud Console uploads one: each file, and a zero-byte object per folder."""
        bucket = self.service.client.bucket(self.bucket)
        for folder in sorted({local, *(p for p in local.rglob("*") if p.is_dir())}):
            name = prefix if folder == local else f"{prefix}/{folder.relative_to(local)}"
            bucket.blob(f"{name}/").upload_from_string(b"")
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            bucket.blob(f"{prefix}/{path.relative_to(local)}").upload_from_filename(str(path))

    def run_template(
        self, job_name: str, spec: str, parameters: Mapping[str, str], *flags: str
    ) -> subprocess.CompletedProcess:
        """`gcloud dataflow flex-template run`, the parameters joined with ^~^ since model_uris holds commas."""
        joined = "^~^" + "~".join(f"{name}={value}" for name, value in parameters.items())
        return self.gcloud(
            "dataflow",
            "flex-template",
            "run",
            job_name,
            f"--region={REGION}",
            f"--template-file-gcs-location={spec}",
            f"--staging-location=gs://{self.bucket}/staging",
            f"--temp-location=gs://{self.bucket}/temp",
            f"--service-account-email={SERVICE_ACCOUNT}",
            f"--parameters={joined}",
            "--format=json",
            *flags,
        )

    def describe(self, job_id: str, full: bool = False) -> dict:
        """`gcloud dataflow jobs describe`, as JSON; with `full`, the whole job, its environment included."""
        done = self.gcloud(
            "dataflow", "jobs", "describe", job_id, f"--region={REGION}", "--format=json", *(["--full"] if full else [])
        )
        if done.returncode != 0:
            raise RuntimeError(f"gcloud dataflow jobs describe {job_id} failed:\n{done.stderr}")
        return json.loads(done.stdout)

    def await_job(self, job_id: str, interval: int = 1) -> subprocess.CompletedProcess:
        """tools/await_job.sh, as users wait for a job: until it runs (exit 0) or fails, with its console log."""
        env = {**self.gcloud_env, "AWAIT_JOB_INTERVAL": str(interval)}
        command = ["bash", str(ROOT / "tools" / "await_job.sh"), job_id, REGION]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)

    def job_messages(self, job_id: str) -> list[str]:
        """The job's messages, as `gcloud beta dataflow logs list --importance=detailed` lists them."""
        done = self.gcloud(
            "beta", "dataflow", "logs", "list", job_id, f"--region={REGION}", "--importance=detailed", "--format=json"
        )
        if done.returncode != 0:
            raise RuntimeError(f"gcloud beta dataflow logs list {job_id} failed:\n{done.stderr}")
        return [message["messageText"] for message in json.loads(done.stdout)]


def workers_images(job: Mapping) -> set[str]:
    """Every container a job's worker pools start, from its full description."""
    pools = job.get("environment", {}).get("workerPools", [])
    return {p["workerHarnessContainerImage"] for p in pools if p.get("workerHarnessContainerImage")} | {
        image["containerImage"] for p in pools for image in p.get("sdkHarnessContainerImages", ())
    }


def registry_docker(bin_dir: Path, digest: str = DIGEST, calls: Path | None = None) -> Path:
    """A `docker` for the push step, answering as the daemon does after a push to a registry that gave the
    manifest `digest`: `push` prints the digest line, `inspect` lists the image's RepoDigests. With `calls`,
    each argv is appended there as a JSON list."""
    record = (
        f"{sys.executable} -c 'import json, sys; print(json.dumps(sys.argv[1:]))' \"$@\" >> {calls}\n" if calls else ""
    )
    docker = bin_dir / "docker"
    docker.write_text(
        "#!/usr/bin/env bash\n"
        f"{record}"
        'image="${@: -1}"\n'
        'case "$1" in\n'
        f'  push) echo "${{image##*:}}: digest: {digest} size: 4321" ;;\n'
        f'  inspect) echo "${{image%:*}}@{digest}" ;;\n'
        '  *) echo "docker stand-in: no $1" >&2; exit 1 ;;\n'
        "esac\n"
    )
    docker.chmod(0o755)
    return docker


def step_environment(gcloud_env: Mapping[str, str], workspace: Path) -> dict[str, str]:
    """gcloud's environment with a `python3` that has only the standard library, as in the Cloud SDK image, and
    the registry's `docker` stand-in."""
    bare = workspace / ".step-bin"
    bare.mkdir()
    (bare / "python3").symlink_to(Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}")
    registry_docker(bare)
    return {**gcloud_env, "PATH": f"{bare}{os.pathsep}{gcloud_env.get('PATH', '')}"}


@contextlib.contextmanager
def local_dataflow(folder: Path) -> Iterator[LocalDataflow]:
    """The GCS emulator, the stand-in and a throwaway gcloud configuration, up for the `with` block.

    The launcher the stand-in starts inherits this process's environment: set STORAGE_EMULATOR_HOST (and any
    credentials hook) here before launching.
    """
    if shutil.which("gcloud") is None:
        raise RuntimeError("gcloud is not installed: the launch is driven by the real gcloud CLI")
    with storage_emulator(folder / "storage-emulator.log") as storage:
        service = FlexTemplateService(storage)
        server = serve(service)
        try:
            env = configure_gcloud(folder / "gcloud", f"http://127.0.0.1:{server.server_port}", PROJECT)
            service.client.create_bucket(BUCKET)
            yield LocalDataflow(storage, service, env)
        finally:
            server.shutdown()


def pattern_parameters(pattern: str, bucket: str = BUCKET) -> dict[str, str]:
    models = [f"gs://{bucket}/models/multiply_by_5"]
    if pattern.startswith("multi"):
        models.append(f"gs://{bucket}/models/multiply_by_10")
    data = "with_bad_records.jsonl" if pattern == "postprocess" else "numbers.csv"
    return {
        "pattern": pattern,
        "model_uris": ",".join(models),
        "input": f"gs://{bucket}/input/{data}",
        "output": f"gs://{bucket}/output/{pattern}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.launch_local", description=__doc__.splitlines()[0])
    parser.add_argument("--pattern", choices=PATTERNS, default="keyed")
    parser.add_argument("--models", type=Path, default=ROOT / "demo" / "models")
    parser.add_argument("--data", type=Path, default=ROOT / "demo" / "data")
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a template parameter to set or override, e.g. model_uris=gs://local-tfx-inference/models/none",
    )
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.parameter if "=" in item)
    if len(overrides) != len(args.parameter):
        parser.error(f"--parameter takes NAME=VALUE, got {[i for i in args.parameter if '=' not in i]}")
    folder = Path(tempfile.mkdtemp(prefix="launch-local-"))
    with local_dataflow(folder) as dataflow:
        # The launcher (main.py) reads and writes the emulator. It has no Google credentials here: the tests'
        # start-up hook answers google.auth with anonymous ones at once, instead of Beam's ~25 s of retries.
        os.environ.update(
            {
                "STORAGE_EMULATOR_HOST": dataflow.storage,
                "TFX_INFERENCE_TEST_ANONYMOUS": "1",
                "PYTHONPATH": str(ROOT / "tests" / "emulators"),
                "TFX_INFERENCE_MODEL_CACHE": str(folder / "model-cache"),
            }
        )
        spec = dataflow.publish_spec()
        print(f"Cloud Build's template-spec step published {spec}")
        for model in ("multiply_by_5", "multiply_by_10"):
            dataflow.upload_model(args.models / model, f"models/{model}")
        for data in ("numbers.csv", "with_bad_records.jsonl"):
            dataflow.service.client.bucket(BUCKET).blob(f"input/{data}").upload_from_filename(str(args.data / data))
        job_name = f"{args.pattern.replace('_', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"
        # The workers' image named at launch too, as Google's samples do: the job is certain of it whether or not
        # the service reads the spec's defaultEnvironment.
        parameters = {**pattern_parameters(args.pattern), "sdk_container_image": IMAGE, **overrides}
        done = dataflow.run_template(job_name, spec, parameters)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        job = json.loads(done.stdout)["job"]
        print(f"job {job['id']} {job['currentState']}: the launcher runs main.py")
        waited = dataflow.await_job(job["id"])
        for launch in dataflow.service.launches:
            print("launcher:", " ".join(launch.command))
        print(waited.stdout, end="")
        if waited.returncode != 0:
            print(waited.stderr, end="", file=sys.stderr)
            return 1
        job = dataflow.describe(job["id"], full=True)
        images = workers_images(job)
        print(f"job {job['id']} ({job['type']}) {job['currentState']}")
        print(f"workers' SDK container: {', '.join(sorted(images))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
