"""A local stand-in of the Dataflow Flex Template service: the launch request, then the job it makes, on loopback.

The real gcloud talks to it (its `api_endpoint_overrides/dataflow` points here): `flex-template run`, `jobs
describe` (with `--full`), `jobs cancel` and `beta dataflow logs list`. A launch has two phases, as the service's:

1. The request. The spec is read from Cloud Storage (the GCS emulator) and the parameters the metadata declares are
   checked (required ones, `regexes` with RE2, enum options); a failed check fails the request itself, with
   INVALID_ARGUMENT and "The template parameters are invalid.". Otherwise the answer is a job at once, queued.
2. Afterwards, in a thread standing for the launcher VM: the Python launcher's contract runs (`python
   $FLEX_TEMPLATE_PYTHON_PY_FILE`, read from the Dockerfile, each parameter as `--name=value`, then the options
   the service sets, `--template_location=<staging>/template_launches/<job id>/job_object` among them); its
   output becomes `console_logs` beside the job object, and the job moves on: to JOB_STATE_RUNNING with the job
   file's type and environment, or to JOB_STATE_FAILED with the service's message when the launcher exits
   non-zero, writes no job file, or runs past the launch timeout.

Where each behaviour comes from:
- the request and response of `projects.locations.flexTemplates.launch` (launchParameter: jobName,
  containerSpecGcsPath, parameters, environment; response: job), `jobs.get` (view JOB_VIEW_SUMMARY, or
  JOB_VIEW_ALL with the environment), `jobs.update` with requestedState JOB_STATE_CANCELLED and `jobs.messages.list`
  (minimumImportance): the Dataflow v1b3 REST reference, and the requests the real gcloud 528 sends (seen with
  `--log-http`); `jobs describe --help`: "Notable values that are only in the full view: Environment";
- undeclared parameters passed on to the launcher, not refused: Google's own sample
  (python-docs-samples dataflow/flex-templates/pipeline_with_dependencies) launches with `--parameters
  sdk_container_image=...`, which no metadata declares, and mozilla/gcp-ingestion PR #1549 ("we don't have to
  specify parameters");
- a failed metadata check as HTTP 400 INVALID_ARGUMENT "The template parameters are invalid." with a
  `google.dataflow.v1beta3.InvalidTemplateParameters` detail listing each parameter's violation ("Missing required
  parameter", "Parameter didn't match regex '...'"): the error body in google-api-java-client's GoogleJsonErrorTest,
  and gcloud's "INVALID_ARGUMENT: The template parameters are invalid. Details: <parameter>: Missing required
  parameter" quoted in public reports;
- a job returned at once, its launcher failing minutes later with the job message "Error occurred in the
  launcher container: Template launch failed. See console logs." (ERROR) after "Console log from launcher will be
  available at gs://<staging>/template_launches/<job id>/console_logs." (INFO): mozilla/gcp-ingestion PR #1899
  and python-docs-samples issue #6245 (the job-message log);
- "Failed to read the job file : <job_object> with error message: (...): Unable to open template file:
  <job_object>.." when the launcher wrote none: python-docs-samples issues #4894 and #9153, and the Troubleshoot
  Flex Templates page (docs.cloud.google.com/dataflow/docs/guides/troubleshoot-templates, updated 2026-03-04);
- "Timeout in polling result file: <staging>/template_launches/<job id>/operation_result. Possible causes are:
  ..." when the launcher takes too long, and the 10 minutes it is given: the same Troubleshoot page (the message)
  and GoogleCloudPlatform/DataflowTemplates' FAQ ("Dataflow has a 10min timeout within which the launcher VM
  logic should complete");
- `python $FLEX_TEMPLATE_PYTHON_PY_FILE`, each parameter as `--name=value`: the Python launcher's logs
  (`python_template_launcher.go`) in python-docs-samples issue #4891, and Google's Python Flex Template samples;
- `--template_location=gs://<staging>/template_launches/<job id>/job_object` next to `--runner=DataflowRunner
  --project --region --job_name --staging_location --temp_location`: the launcher's "Executing: ..." log line
  quoted in public notes (the Java launcher, whose flags are the camelCase of these), the Troubleshoot page's list
  of options a template must not override (runner, project, job_name, template_location, region), and Beam's own
  DataflowRunner, which under `--template_location` writes the job file there instead of submitting;
- `--sdk_container_image` and `--service_account_email`: the Beam options of the merged environment's
  `sdkContainerImage` and `serviceAccountEmail` (FlexTemplateRuntimeEnvironment).

Assumptions, no public source found (the tests resting on one say so):
- the other environment fields become the Beam options of ENVIRONMENT_OPTIONS and the flags of
  `launcher_arguments` (experiments, streaming engine, private IPs, labels), and the spec's `defaultEnvironment`
  is merged under the request's `environment`, field by field;
- a launch with no staging location is refused here: the service would default to a bucket of its own;
- `operation_result` holds `{"exitCode": N}` (the service reads it; its form is not published), and a launcher
  killed by the timeout writes none;
- a launched job stays JOB_STATE_RUNNING: no workers run here, so nothing finishes it but a cancel;
- the INFO job message has importance JOB_MESSAGE_BASIC;
- an enum parameter given a value outside its options is a violation "Parameter value '...' is not one of ...".

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
from urllib.parse import parse_qs

import re2

ROOT = Path(__file__).resolve().parent.parent
LAUNCH_PATH = re.compile(r"^/v1b3/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/flexTemplates:launch$")
JOB_PATH = re.compile(
    r"^/v1b3/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/jobs/(?P<job>[^/]+)(?P<messages>/messages)?$"
)
# Dataflow gives the launcher VM 10 minutes (GoogleCloudPlatform/DataflowTemplates' FAQ).
LAUNCH_TIMEOUT_SECONDS = 600.0
TERMINAL_STATES = frozenset({"JOB_STATE_DONE", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_DRAINED"})
IMPORTANCE = (
    "JOB_MESSAGE_DEBUG",
    "JOB_MESSAGE_DETAILED",
    "JOB_MESSAGE_BASIC",
    "JOB_MESSAGE_WARNING",
    "JOB_MESSAGE_ERROR",
)
LAUNCHER_FAILED = "Error occurred in the launcher container: Template launch failed. See console logs."
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
    """A request fails as the service fails it: an HTTP status, a google.rpc status, a message and its details."""

    def __init__(self, http_status: int, status: str, message: str, details: Sequence[Mapping] = ()):
        super().__init__(message)
        self.http_status = http_status
        self.status = status
        self.details = list(details)

    def body(self) -> dict:
        error = {"code": self.http_status, "message": str(self), "status": self.status}
        return {"error": {**error, "details": self.details} if self.details else error}


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


def parameter_violations(metadata: Mapping, parameters: Mapping[str, str]) -> list[dict[str, str]]:
    """Each declared parameter the service would refuse, as InvalidTemplateParameters' parameterViolations: missing,
    a regex not matched, not an enum option. Undeclared parameters pass: they go on to the launcher."""
    violations = []
    for spec in metadata.get("parameters", ()):
        name, value = spec["name"], parameters.get(spec["name"])
        if value is None:
            if not spec.get("isOptional", False):
                violations.append({"parameter": name, "description": "Missing required parameter"})
            continue
        violations += [
            {"parameter": name, "description": f"Parameter didn't match regex '{regex}'"}
            for regex in spec.get("regexes", ())
            if not re2.fullmatch(regex, value)
        ]
        options = [option["value"] for option in spec.get("enumOptions", ())]
        if spec.get("paramType") == "ENUM" and value not in options:
            violations.append(
                {"parameter": name, "description": f"Parameter value '{value}' is not one of {', '.join(options)}"}
            )
    return violations


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
    """One launcher run: the command as it would run in the image, how it ended (returncode None: killed at the
    launch timeout), and the job file it was to write."""

    job_id: str
    command: tuple[str, ...]
    returncode: int | None
    stdout: str
    stderr: str
    job_file: str


@dataclass
class JobRecord:
    """One job as the service holds it: made by a launch request, then moved on by its launcher or a cancel."""

    job: Job
    staging: str
    created: str
    state: str = "JOB_STATE_QUEUED"
    state_time: str = ""
    type: str | None = None
    environment: dict = field(default_factory=dict)
    messages: list[dict] = field(default_factory=list)
    launched: threading.Event = field(default_factory=threading.Event)

    def resource(self, view: str = "JOB_VIEW_SUMMARY") -> dict:
        """The Job resource as jobs.get answers it; the environment only in the full view."""
        job = {
            "id": self.job.id,
            "projectId": self.job.project,
            "name": self.job.name,
            "location": self.job.region,
            "currentState": self.state,
            "currentStateTime": self.state_time or self.created,
            "createTime": self.created,
        }
        if self.type:
            job["type"] = self.type
        if view == "JOB_VIEW_ALL" and self.environment:
            job["environment"] = self.environment
        return job


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


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


def launch_folder(staging_location: str, job_id: str) -> str:
    """Where the launcher writes the job object, its console log and its result."""
    return f"{staging_location.rstrip('/')}/template_launches/{job_id}"


def job_file_path(staging_location: str, job_id: str) -> str:
    return f"{launch_folder(staging_location, job_id)}/job_object"


def _split_gs(path: str) -> tuple[str, str]:
    if not path.startswith("gs://") or "/" not in path[5:]:
        raise LaunchRefused(400, "INVALID_ARGUMENT", f"{path} is not a gs://BUCKET/OBJECT path")
    bucket, name = path[5:].split("/", 1)
    return bucket, name


class FlexTemplateService:
    """The service's two phases, given the GCS emulator's address and the template image's Dockerfile."""

    def __init__(
        self,
        storage: str,
        dockerfile: Path = ROOT / "Dockerfile",
        python: str = sys.executable,
        launch_timeout: float = LAUNCH_TIMEOUT_SECONDS,
    ):
        from google.cloud import storage as gcs

        self.storage = storage.rstrip("/")
        self.launcher = launcher_from_dockerfile(dockerfile)
        self.python = python
        self.launch_timeout = launch_timeout
        self.client = gcs.Client(
            project="stand-in", client_options={"api_endpoint": self.storage}, credentials=_anonymous()
        )
        self.launches: list[Launch] = []  # each launcher run once it ended, for tests and `make launch-local`
        self.jobs: dict[str, JobRecord] = {}
        self._lock = threading.Lock()

    def _read(self, path: str) -> bytes | None:
        bucket, name = _split_gs(path)
        blob = self.client.bucket(bucket).blob(name)
        return blob.download_as_bytes() if blob.exists() else None

    def _write(self, path: str, data: str) -> None:
        bucket, name = _split_gs(path)
        self.client.bucket(bucket).blob(name).upload_from_string(data)

    def read_job_file(self, path: str) -> dict:
        data = self._read(path)
        if data is None:
            raise FileNotFoundError(path)
        return json.loads(data)

    def launch(self, project: str, region: str, request: Mapping) -> dict:
        """projects.locations.flexTemplates.launch: the spec and the declared parameters checked, then a queued
        job at once, its launcher started on a thread; or LaunchRefused as the service refuses the request."""
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
        violations = parameter_violations(spec.get("metadata") or {}, parameters)
        if violations:
            detail = {
                "@type": "type.googleapis.com/google.dataflow.v1beta3.InvalidTemplateParameters",
                "parameterViolations": violations,
            }
            raise LaunchRefused(400, "INVALID_ARGUMENT", "The template parameters are invalid.", [detail])
        environment = merged_environment(spec.get("defaultEnvironment") or {}, parameter.get("environment") or {})
        if request.get("validateOnly"):
            return {}
        job = Job(project, region, job_name, new_job_id())
        arguments = launcher_arguments(job, parameters, environment)
        record = JobRecord(job, environment["stagingLocation"], _now())
        with self._lock:
            self.jobs[job.id] = record
        threading.Thread(
            target=self._run_launcher,
            args=(record, arguments, environment, spec["image"]),
            name=f"launcher-{job.id}",
            daemon=True,
        ).start()
        return {"job": record.resource()}

    def _run_launcher(self, record: JobRecord, arguments: list[str], environment: Mapping, image: str) -> None:
        """The launcher VM: run the entry file, keep its console log, and move the job on by how it ended; the
        job never stays queued, even when the stand-in itself fails."""
        try:
            self._launch_job(record, arguments, environment, image)
        except Exception as error:
            self._fail(record, f"(stand-in) the launch could not be carried out: {error!r}")
        finally:
            record.launched.set()

    def _launch_job(self, record: JobRecord, arguments: list[str], environment: Mapping, image: str) -> None:
        folder = launch_folder(record.staging, record.job.id)
        console_log, result_file, job_file = (
            f"{folder}/{name}" for name in ("console_logs", "operation_result", "job_object")
        )
        self._message(record, "JOB_MESSAGE_BASIC", f"Console log from launcher will be available at {console_log}.")
        command = [self.python, str(self.launcher.local_py_file), *arguments]
        with tempfile.TemporaryDirectory(prefix="launcher-") as workdir:
            try:
                done = subprocess.run(
                    command,
                    capture_output=True,
                    text=True,
                    cwd=workdir,
                    env={**os.environ, **self.launcher.env},
                    timeout=self.launch_timeout,
                )
                returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
            except subprocess.TimeoutExpired as expired:
                returncode, stdout, stderr = None, _text(expired.stdout), _text(expired.stderr)
        self._write(console_log, stdout + stderr)
        self.launches.append(
            Launch(record.job.id, ("python", self.launcher.py_file, *arguments), returncode, stdout, stderr, job_file)
        )
        if returncode is None:
            self._fail(
                record,
                f"Timeout in polling result file: {result_file}. Possible causes are:\n"
                "1. Your launch takes too long time to finish. Please check the logs on stackdriver.\n"
                f"2. Service account {environment.get('serviceAccountEmail', '(default)')} may not have enough "
                f"permissions to pull\ncontainer image {image} or create new objects in {result_file}.\n"
                "3. Transient errors occurred, please try again.",
            )
            return
        self._write(result_file, json.dumps({"exitCode": returncode}))
        if returncode != 0:
            self._fail(record, LAUNCHER_FAILED)
            return
        try:
            job_object = self.read_job_file(job_file)
        except FileNotFoundError:
            self._fail(
                record,
                f"Failed to read the job file : {job_file} with error message: (stand-in): "
                f"Unable to open template file: {job_file}..",
            )
            return
        with self._lock:
            if record.state not in TERMINAL_STATES:  # else cancelled while its launcher ran
                record.type = job_object.get("type", "JOB_TYPE_UNKNOWN")
                record.environment = job_object.get("environment", {})
                record.state, record.state_time = "JOB_STATE_RUNNING", _now()

    def _message(self, record: JobRecord, importance: str, text: str) -> None:
        with self._lock:
            number = len(record.messages) + 1
            record.messages.append(
                {
                    "id": f"{record.job.id}-{number}",
                    "time": _now(),
                    "messageText": text,
                    "messageImportance": importance,
                }
            )

    def _fail(self, record: JobRecord, message: str) -> None:
        self._message(record, "JOB_MESSAGE_ERROR", message)
        with self._lock:
            if record.state not in TERMINAL_STATES:
                record.state, record.state_time = "JOB_STATE_FAILED", _now()

    def record(self, project: str, region: str, job_id: str) -> JobRecord:
        with self._lock:
            record = self.jobs.get(job_id)
        if record is None or (record.job.project, record.job.region) != (project, region):
            raise LaunchRefused(404, "NOT_FOUND", f"(stand-in): Information about job {job_id} could not be found.")
        return record

    def get(self, project: str, region: str, job_id: str, view: str) -> dict:
        """projects.locations.jobs.get."""
        return self.record(project, region, job_id).resource(view)

    def list_messages(self, project: str, region: str, job_id: str, minimum: str) -> dict:
        """projects.locations.jobs.messages.list: the job's messages of at least `minimum` importance."""
        record = self.record(project, region, job_id)
        lowest = IMPORTANCE.index(minimum) if minimum in IMPORTANCE else 0
        with self._lock:
            messages = [m for m in record.messages if IMPORTANCE.index(m["messageImportance"]) >= lowest]
        return {"jobMessages": messages}

    def update(self, project: str, region: str, job_id: str, body: Mapping) -> dict:
        """projects.locations.jobs.update, for a cancel (`gcloud dataflow jobs cancel`)."""
        record = self.record(project, region, job_id)
        if body.get("requestedState") != "JOB_STATE_CANCELLED":
            raise LaunchRefused(400, "INVALID_ARGUMENT", "(stand-in): only a cancel is modelled")
        with self._lock:
            if record.state in TERMINAL_STATES:
                raise LaunchRefused(
                    400, "FAILED_PRECONDITION", f"Workflow modification failed: the job is already {record.state}."
                )
            record.state, record.state_time = "JOB_STATE_CANCELLED", _now()
        return record.resource()

    def settled(self, job_id: str, timeout: float = LAUNCH_TIMEOUT_SECONDS + 60) -> JobRecord:
        """The job once its launcher has ended (for tests and `make launch-local`, which then read it as users do)."""
        record = self.jobs[job_id]
        if not record.launched.wait(timeout):
            raise TimeoutError(f"the launcher of job {job_id} was still running after {timeout} s")
        return record


def _text(output: str | bytes | None) -> str:
    """What a timed-out process had printed (TimeoutExpired keeps bytes even for a text-mode run)."""
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


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

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            # Only the requests refused: a waiting user's polls, each answered, would drown everything else.
            if not str(code).startswith(("2", "3")):
                super().log_request(code, size)

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

        def _answer_json(self, call) -> None:
            try:
                self._answer(200, json.dumps(call()).encode())
            except LaunchRefused as refused:
                self._answer(refused.http_status, json.dumps(refused.body()).encode())

        def _dataflow(self, method: str) -> None:
            path, _, query = self.path.partition("?")
            options = {name: values[-1] for name, values in parse_qs(query).items()}
            launch, job = LAUNCH_PATH.match(path), JOB_PATH.match(path)
            if method == "POST" and launch:
                body = json.loads(self._body() or b"{}")
                self._answer_json(lambda: service.launch(launch["project"], launch["region"], body))
            elif method == "GET" and job and job["messages"]:
                minimum = options.get("minimumImportance", "JOB_MESSAGE_DEBUG")
                self._answer_json(lambda: service.list_messages(job["project"], job["region"], job["job"], minimum))
            elif method == "GET" and job:
                view = options.get("view", "JOB_VIEW_SUMMARY")
                self._answer_json(lambda: service.get(job["project"], job["region"], job["job"], view))
            elif method == "PUT" and job and not job["messages"]:
                body = json.loads(self._body() or b"{}")
                self._answer_json(lambda: service.update(job["project"], job["region"], job["job"], body))
            else:
                refused = LaunchRefused(404, "NOT_FOUND", f"{method} {path} is not a method of this stand-in")
                self._answer(404, json.dumps(refused.body()).encode())

        def _route(self, method: str) -> None:
            if self.path.startswith(STORAGE_PREFIXES):
                self._forward(method)
            else:
                self._dataflow(method)

        def do_GET(self) -> None:
            self._route("GET")

        def do_DELETE(self) -> None:
            self._route("DELETE")

        def do_PUT(self) -> None:
            self._route("PUT")

        def do_PATCH(self) -> None:
            self._route("PATCH")

        def do_POST(self) -> None:
            self._route("POST")

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
