"""A local stand-in of the Dataflow Flex Template service: `flexTemplates.launch` answered on a loopback port.

The real `gcloud dataflow flex-template run` talks to it (its `api_endpoint_overrides/dataflow` points here). It
does what the service does before a job exists: it reads the spec from Cloud Storage (the GCS emulator), checks
the parameters against the spec's metadata (required ones, `regexes` with RE2, enum options) and refuses bad ones
before any launcher runs, merges the spec's `defaultEnvironment` with the request's `environment`, and runs the
Python launcher's contract: `python $FLEX_TEMPLATE_PYTHON_PY_FILE` (read from the Dockerfile), each parameter as
`--name=value`, then the launcher's own flags, `--template_location=<staging>/template_launches/<job id>/job_object`
among them. It answers with the job only when the launcher exited 0 and the job file is there; the job's type
(batch or streaming) is the one that job file names, as Beam's DataflowRunner wrote it.

Where each fact about the launcher comes from:
- request and response of `projects.locations.flexTemplates.launch` (launchParameter: jobName,
  containerSpecGcsPath, parameters, environment; response: job): the Dataflow v1b3 REST reference, and the body
  the real gcloud 528 sends (seen with `--log-http`);
- `python $FLEX_TEMPLATE_PYTHON_PY_FILE`, each parameter as `--name=value`: the Python launcher's logs
  (`python_template_launcher.go`) in python-docs-samples issue 4891, and Google's Python flex template samples;
- `--template_location=gs://<staging>/template_launches/<job id>/job_object` next to `--runner=DataflowRunner
  --project --region --job_name --staging_location --temp_location`: the launcher's "Executing: ..." log line
  quoted in public notes (the Java launcher, whose flags are the camelCase of these: `--templateLocation`,
  `--jobName`, `--stagingLocation`, `--serviceAccount`), the `console_logs` and `operation_result` files next to
  the job object in public troubleshooting guides, and Beam's own DataflowRunner, which under
  `--template_location` writes the job file there instead of submitting;
- `--sdk_container_image` and `--service_account_email`: the Beam options of the merged environment's
  `sdkContainerImage` and `serviceAccountEmail` (FlexTemplateRuntimeEnvironment), as issue 12 of this project
  lists the launcher's flags;
- parameters not declared in the metadata refused: python-docs-samples issue 4894 (a parameter had to be added
  to metadata.json before the service accepted it).

gcloud writes objects with a multipart body whose boundary is single-quoted, which gcp-storage-emulator cannot
parse, so Cloud Storage requests sent here are passed on to the emulator with the boundary double-quoted.

    python -m tools.flex_template_service --port=8089 --storage=http://127.0.0.1:9023
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import re2

ROOT = Path(__file__).resolve().parent.parent
LAUNCH_PATH = re.compile(r"^/v1b3/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/flexTemplates:launch$")
STORAGE_PREFIXES = ("/storage/v1/", "/upload/storage/v1/", "/download/storage/v1/", "/resumable/upload/storage/v1/")

# FlexTemplateRuntimeEnvironment fields and the Beam pipeline option each becomes on the launcher's command line.
ENVIRONMENT_OPTIONS = {
    "tempLocation": "temp_location",
    "stagingLocation": "staging_location",
    "sdkContainerImage": "sdk_container_image",
    "serviceAccountEmail": "service_account_email",
    "numWorkers": "num_workers",
    "maxWorkers": "max_num_workers",
    "machineType": "machine_type",
    "network": "network",
    "subnetwork": "subnetwork",
    "workerRegion": "worker_region",
    "workerZone": "worker_zone",
    "kmsKeyName": "dataflow_kms_key",
}


class LaunchRefused(Exception):
    """The launch request fails as the service fails it: an HTTP status, a google.rpc status and a message."""

    def __init__(self, http_status: int, status: str, message: str):
        super().__init__(message)
        self.http_status = http_status
        self.status = status


@dataclass(frozen=True)
class Launcher:
    """What the template image gives the launcher: its Python entry file and environment, mapped to this checkout."""

    py_file: str
    local_py_file: Path
    env: Mapping[str, str] = field(default_factory=dict)


def launcher_from_dockerfile(dockerfile: Path) -> Launcher:
    """FLEX_TEMPLATE_PYTHON_PY_FILE and the final stage's ENV of the Dockerfile, the entry file found in its context.

    A requirements or setup file would make the real launcher pip-install at launch: refused here, since the image
    must already hold everything.
    """
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    stage = text.split("\nFROM ")[-1]
    env = {}
    for line in stage.splitlines():
        if line.startswith("ENV "):
            for name, value in re.findall(r"(\w+)=(\"[^\"]*\"|\S+)", line[4:]):
                env[name] = value.strip('"')
    py_file = env.get("FLEX_TEMPLATE_PYTHON_PY_FILE")
    if not py_file:
        raise ValueError(f"{dockerfile} sets no FLEX_TEMPLATE_PYTHON_PY_FILE: the Python launcher has nothing to run")
    installs = sorted({"FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE", "FLEX_TEMPLATE_PYTHON_SETUP_FILE"} & set(env))
    if installs:
        raise ValueError(f"{dockerfile} sets {', '.join(installs)}: the launcher would pip-install at launch")
    workdirs = re.findall(r"^WORKDIR (\S+)", stage, re.MULTILINE)
    workdir = workdirs[-1].rstrip("/") if workdirs else ""
    if not workdir or not py_file.startswith(workdir + "/"):
        raise ValueError(
            f"FLEX_TEMPLATE_PYTHON_PY_FILE={py_file} is not under the image's WORKDIR {workdir or '(none)'}"
        )
    relative = py_file[len(workdir) + 1 :]
    copied = [
        source
        for line in stage.splitlines()
        if line.startswith("COPY ") and "--from=" not in line
        for source in line.split()[1:-1]
    ]
    if relative not in copied:
        raise ValueError(f"the Dockerfile copies no {relative} to {py_file}")
    return Launcher(py_file, dockerfile.parent / relative, env)


def parameter_errors(metadata: Mapping, parameters: Mapping[str, str]) -> list[str]:
    """Why the service would refuse these parameters: unknown, missing, a regex not matched, not an enum option."""
    declared = {p["name"]: p for p in metadata.get("parameters", ())}
    errors = [f"Unrecognized parameter {name!r}" for name in sorted(set(parameters) - set(declared))]
    for name, spec in declared.items():
        value = parameters.get(name)
        if value is None:
            if not spec.get("isOptional", False):
                errors.append(f"Missing required parameter {name!r}")
            continue
        for regex in spec.get("regexes", ()):
            if not re2.fullmatch(regex, value):
                errors.append(f"Parameter {name!r} value {value!r} does not match the regex {regex!r}")
        if spec.get("paramType") == "ENUM":
            options = [option["value"] for option in spec.get("enumOptions", ())]
            if value not in options:
                errors.append(f"Parameter {name!r} value {value!r} is not one of {', '.join(options)}")
    return errors


def merged_environment(default: Mapping, requested: Mapping) -> dict:
    """The spec's defaultEnvironment, each field the launch request sets taking its place."""
    return {**default, **{name: value for name, value in requested.items() if value not in (None, "", [], {})}}


def new_job_id(now: datetime | None = None) -> str:
    """A job id shaped as Dataflow's: the UTC launch time, then a 19-digit number."""
    now = now or datetime.now(UTC)
    return f"{now:%Y-%m-%d_%H_%M_%S}-{10**18 + secrets.randbelow(9 * 10**18)}"


@dataclass(frozen=True)
class Job:
    """The job a launch request names, as the service fills it in before the launcher runs."""

    project: str
    region: str
    name: str
    id: str


@dataclass(frozen=True)
class Launch:
    """One launcher run: the command as it would run in the image, how it ended, and the job file it was to write."""

    job_id: str
    command: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    job_file: str


def launcher_arguments(job: Job, parameters: Mapping[str, str], environment: Mapping) -> list[str]:
    """What the launcher passes the entry file: the template's parameters, then the options the service sets."""
    staging = environment.get("stagingLocation")
    if not staging:
        raise LaunchRefused(
            400, "INVALID_ARGUMENT", "no staging location: pass --staging-location (the stand-in has no default bucket)"
        )
    environment = {"tempLocation": staging, **environment}
    unknown = sorted(
        set(environment)
        - set(ENVIRONMENT_OPTIONS)
        - {"additionalExperiments", "enableStreamingEngine", "ipConfiguration", "additionalUserLabels"}
    )
    if unknown:
        raise LaunchRefused(400, "INVALID_ARGUMENT", f"the stand-in does not pass environment field(s) {unknown}")
    command = [f"--{name}={value}" for name, value in parameters.items()]
    command += ["--runner=DataflowRunner", f"--project={job.project}", f"--region={job.region}"]
    command.append(f"--job_name={job.name}")
    command += [
        f"--{option}={environment[name]}" for name, option in ENVIRONMENT_OPTIONS.items() if name in environment
    ]
    command += [f"--experiments={experiment}" for experiment in environment.get("additionalExperiments", ())]
    if environment.get("enableStreamingEngine"):
        command.append("--enable_streaming_engine")
    if environment.get("ipConfiguration") == "WORKER_IP_PRIVATE":
        command.append("--no_use_public_ips")
    labels = environment.get("additionalUserLabels") or {}
    command += [f"--labels={name}={value}" for name, value in labels.items()]
    command.append(f"--template_location={job_file_path(staging, job.id)}")
    return command


def job_file_path(staging_location: str, job_id: str) -> str:
    return f"{staging_location.rstrip('/')}/template_launches/{job_id}/job_object"


def _split_gs(path: str) -> tuple[str, str]:
    if not path.startswith("gs://") or "/" not in path[5:]:
        raise LaunchRefused(400, "INVALID_ARGUMENT", f"{path} is not a gs://BUCKET/OBJECT path")
    bucket, name = path[5:].split("/", 1)
    return bucket, name


class FlexTemplateService:
    """The launch logic, given the GCS emulator's address and the template image's Dockerfile."""

    def __init__(self, storage: str, dockerfile: Path = ROOT / "Dockerfile", python: str = sys.executable):
        from google.cloud import storage as gcs

        self.storage = storage.rstrip("/")
        self.launcher = launcher_from_dockerfile(dockerfile)
        self.python = python
        self.client = gcs.Client(
            project="stand-in", client_options={"api_endpoint": self.storage}, credentials=_anonymous()
        )
        self.launches: list[Launch] = []  # what each launch ran, for tests and `make launch-local` to show

    def _read(self, path: str) -> bytes | None:
        bucket, name = _split_gs(path)
        blob = self.client.bucket(bucket).blob(name)
        return blob.download_as_bytes() if blob.exists() else None

    def read_job_file(self, path: str) -> dict:
        data = self._read(path)
        if data is None:
            raise FileNotFoundError(path)
        return json.loads(data)

    def launch(self, project: str, region: str, request: Mapping) -> dict:
        """projects.locations.flexTemplates.launch: the job, or LaunchRefused as the service would refuse it."""
        parameter = request.get("launchParameter") or {}
        job_name, spec_path = parameter.get("jobName"), parameter.get("containerSpecGcsPath")
        if not job_name or not spec_path:
            raise LaunchRefused(400, "INVALID_ARGUMENT", "launchParameter needs jobName and containerSpecGcsPath")
        data = self._read(spec_path)
        if data is None:
            raise LaunchRefused(400, "FAILED_PRECONDITION", f"Unable to open template file: {spec_path}.")
        try:
            spec = json.loads(data)
        except ValueError as error:
            raise LaunchRefused(400, "FAILED_PRECONDITION", f"Template file {spec_path} is not JSON: {error}") from None
        if spec.get("sdkInfo", {}).get("language") != "PYTHON" or not spec.get("image"):
            raise LaunchRefused(
                400, "FAILED_PRECONDITION", f"{spec_path} is not a Python Flex Template spec with an image"
            )
        parameters = dict(parameter.get("parameters") or {})
        errors = parameter_errors(spec.get("metadata") or {}, parameters)
        if errors:
            raise LaunchRefused(
                400,
                "INVALID_ARGUMENT",
                f"Invalid template parameters. The template parameters are invalid. Details: {'; '.join(errors)}",
            )
        environment = merged_environment(spec.get("defaultEnvironment") or {}, parameter.get("environment") or {})
        if request.get("validateOnly"):
            return {}
        job = Job(project, region, job_name, new_job_id())
        arguments = launcher_arguments(job, parameters, environment)
        job_file = job_file_path(environment["stagingLocation"], job.id)
        with tempfile.TemporaryDirectory(prefix="launcher-") as workdir:
            done = subprocess.run(
                [self.python, str(self.launcher.local_py_file), *arguments],
                capture_output=True,
                text=True,
                cwd=workdir,
                env={**os.environ, **self.launcher.env},
            )
        console_log = job_file.rsplit("/", 1)[0] + "/console_logs"
        bucket, name = _split_gs(console_log)
        self.client.bucket(bucket).blob(name).upload_from_string(done.stdout + done.stderr)
        command = ("python", self.launcher.py_file, *arguments)
        self.launches.append(Launch(job.id, command, done.returncode, done.stdout, done.stderr, job_file))
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            raise LaunchRefused(
                400,
                "FAILED_PRECONDITION",
                f"Template launch failed: python exited with status "
                f"{done.returncode}. Console log: {console_log}\n{tail}",
            )
        if self._read(job_file) is None:
            raise LaunchRefused(
                400,
                "FAILED_PRECONDITION",
                f"Template launch failed: the launcher exited 0 but "
                f"wrote no job file at {job_file}. Console log: {console_log}",
            )
        job_object = self.read_job_file(job_file)
        return {
            "job": {
                "id": job.id,
                "projectId": project,
                "name": job_name,
                "type": job_object["type"],
                "location": region,
                "currentState": "JOB_STATE_QUEUED",
                "createTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            }
        }


def _anonymous():
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()


def _double_quoted_boundary(content_type: str) -> str:
    return re.sub(r"boundary='([^']*)'", r'boundary="\1"', content_type)


def make_handler(service: FlexTemplateService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args) -> None:
            sys.stderr.write(f"flex-template-service: {format % args}\n")

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _answer(self, status: int, body: bytes, content_type: str = "application/json", headers=()) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _forward(self, method: str) -> None:
            body = self._body() if method in ("POST", "PUT", "PATCH") else None
            headers = {
                name: _double_quoted_boundary(value) if name.lower() == "content-type" else value
                for name, value in self.headers.items()
                if name.lower() not in ("host", "content-length", "accept-encoding", "connection")
            }
            request = urllib.request.Request(service.storage + self.path, data=body, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=120) as response:
                    status, data, reply_headers = response.status, response.read(), response.headers
            except urllib.error.HTTPError as error:
                status, data, reply_headers = error.code, error.read(), error.headers
            passed = [(n, v) for n, v in reply_headers.items() if n.lower() in ("location", "x-goog-generation")]
            self._answer(status, data, reply_headers.get("Content-Type", "application/json"), passed)

        def _launch(self) -> None:
            match = LAUNCH_PATH.match(self.path.split("?", 1)[0])
            if match is None:
                error = {"code": 404, "message": f"{self.path} is not a method of this stand-in", "status": "NOT_FOUND"}
                self._answer(404, json.dumps({"error": error}).encode())
                return
            try:
                response = service.launch(match["project"], match["region"], json.loads(self._body() or b"{}"))
                self._answer(200, json.dumps(response).encode())
            except LaunchRefused as refused:
                error = {"code": refused.http_status, "message": str(refused), "status": refused.status}
                self._answer(refused.http_status, json.dumps({"error": error}).encode())

        def do_GET(self) -> None:
            self._forward("GET")

        def do_DELETE(self) -> None:
            self._forward("DELETE")

        def do_PUT(self) -> None:
            self._forward("PUT")

        def do_PATCH(self) -> None:
            self._forward("PATCH")

        def do_POST(self) -> None:
            if self.path.startswith(STORAGE_PREFIXES):
                self._forward("POST")
            else:
                self._launch()

    return Handler


def serve(service: FlexTemplateService, port: int = 0) -> ThreadingHTTPServer:
    """The stand-in listening on 127.0.0.1:`port` (0: any free port) in a background thread; `.shutdown()` stops it."""
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(service))
    threading.Thread(target=server.serve_forever, name="flex-template-service", daemon=True).start()
    return server


def gcloud_properties(service_url: str) -> dict[str, str]:
    """The gcloud configuration that sends `dataflow` and `storage` calls here, without credentials."""
    return {
        "auth/disable_credentials": "true",
        "api_endpoint_overrides/dataflow": f"{service_url}/",
        "api_endpoint_overrides/storage": f"{service_url}/storage/v1/",
    }


def configure_gcloud(config_dir: Path, service_url: str, project: str, gcloud: str = "gcloud") -> dict[str, str]:
    """A throwaway CLOUDSDK_CONFIG pointing gcloud at the stand-in; returns the environment to run gcloud with."""
    # PYTHONPATH is the pipeline's, not gcloud's: gcloud runs its own bundled Python.
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    env.update({"CLOUDSDK_CONFIG": str(config_dir), "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"})
    for name, value in {**gcloud_properties(service_url), "core/project": project}.items():
        subprocess.run([gcloud, "config", "set", name, value], env=env, check=True, capture_output=True, text=True)
    return env


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.flex_template_service", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8089, help="loopback port to listen on")
    parser.add_argument("--storage", required=True, help="the GCS emulator, e.g. http://127.0.0.1:9023")
    parser.add_argument("--dockerfile", type=Path, default=ROOT / "Dockerfile", help="the template image's Dockerfile")
    args = parser.parse_args(argv)
    server = serve(FlexTemplateService(args.storage, args.dockerfile), args.port)
    print(f"Flex Template service stand-in on http://127.0.0.1:{server.server_port}/ (Ctrl-C stops it)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
