"""How the locks are installed, everywhere: the machine's own pip installs only the pinned uv, and uv the locks.

pip 23.2.1, the pip that Python 3.11.7 bundles, asked under --require-hashes for a pinned package with extras
(google-auth[pyopenssl] from google-cloud-bigquery), reaches for the registry's newest release and fails: a fresh
clone stopped installing the day google-auth 2.63.1 was published. The slow test here installs as a fresh clone
does, from a virtualenv made by the machine's python3.11, so it fails the day that happens again.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
INSTALLER_LOCK = "requirements/uv.txt"
# Every virtualenv the Makefile makes, by the file that says it is made.
VIRTUALENVS = {".venv": ".venv/.installed", ".venv-checkov": ".venv-checkov/bin/checkov"}
VIRTUALENVS[".venv-bqemulator"] = ".venv-bqemulator/bin/bqemulator"


def makefile_commands(target: str) -> list[str]:
    """The commands `make` would run to make `target` from nothing (a dry run: nothing is executed)."""
    done = subprocess.run(["make", "-n", "-B", target], capture_output=True, text=True, cwd=ROOT, check=True)
    return done.stdout.splitlines()


def dockerfile_commands() -> list[str]:
    """The shell commands of the image's RUN instructions, split at `&&`."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    runs = [line.strip()[4:] for line in text.splitlines() if line.strip().startswith("RUN ")]
    return [command.strip() for run in runs for command in run.split("&&")]


def cloudbuild_test_commands() -> list[str]:
    """The script of Cloud Build's test step, a command a line."""
    step = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())["steps"][0]
    assert step["id"] == "lint-and-fast-tests"
    return step["args"][-1].splitlines()


def installs(commands: list[str]) -> list[list[str]]:
    """Each `pip install` or `uv pip install` among `commands`, as words."""
    words = [shlex.split(command) for command in commands]
    return [w for w in words if "install" in w and Path(w[w.index("install") - 1]).name == "pip"]


def requirement_files(words: list[str]) -> list[str]:
    return [words[i + 1] for i, word in enumerate(words) if word == "-r"]


def assert_the_pinned_uv_installs_every_lock(commands: list[str], where: str) -> None:
    """The first install is pip's, of the pinned uv alone, hash-checked; every later one is uv's, and each lock
    uv installs is hash-checked with the lock's own build tools."""
    first, *rest = installs(commands)
    assert Path(first[0]).name == "pip", f"{where}: pip installs the installer first: {first}"
    assert requirement_files(first) == [INSTALLER_LOCK] and "--require-hashes" in first, f"{where}: {first}"
    assert rest, f"{where}: nothing is installed after the installer"
    for words in rest:
        assert Path(words[0]).name == "uv" and words[1:3] == ["pip", "install"], f"{where}: not uv: {words}"
        if requirement_files(words):
            assert "--require-hashes" in words, f"{where}: a lock installed without its hashes: {words}"
            assert words[words.index("--build-constraints") + 1] == "requirements.txt", where


@pytest.mark.parametrize("virtualenv", sorted(VIRTUALENVS))
def test_every_virtualenv_starts_from_the_machines_python_and_installs_through_the_pinned_uv(virtualenv):
    commands = makefile_commands(VIRTUALENVS[virtualenv])
    start = commands.index(f"python3.11 -m venv {virtualenv}")
    assert commands[start - 1] == f"rm -rf {virtualenv}", "a virtualenv is made anew, not patched"
    mine = [c for c in commands[start:] if c.startswith(f"{virtualenv}/bin/")]
    assert_the_pinned_uv_installs_every_lock(mine, virtualenv)
    assert any(f"{virtualenv}/bin/uv pip install" in c and "-r requirements" in c for c in mine)


def test_the_image_installs_the_lock_with_the_same_installer():
    commands = dockerfile_commands()
    assert_the_pinned_uv_installs_every_lock(commands, "Dockerfile")
    assert "pip uninstall --yes uv" in commands, "uv is not part of the image's installed set"
    uninstall = commands.index("pip uninstall --yes uv")
    assert all("uv pip" not in c for c in commands[uninstall:])


def test_cloud_builds_tests_install_the_locks_with_the_same_installer():
    commands = cloudbuild_test_commands()
    assert_the_pinned_uv_installs_every_lock(commands, "cloudbuild.yaml")
    locks = [f for words in installs(commands) for f in requirement_files(words)]
    assert locks == [INSTALLER_LOCK, "requirements.txt", "requirements-dev.txt"]


def test_the_installer_lock_pins_one_uv_release_with_its_hashes():
    lock = (ROOT / INSTALLER_LOCK).read_text()
    pins = re.findall(r"^([a-z0-9-]+)==(\S+)", lock, re.MULTILINE)
    assert [name for name, _ in pins] == ["uv"]
    assert f"uv=={pins[0][1]}" in (ROOT / "requirements/uv.in").read_text()
    assert len(re.findall(r"--hash=sha256:[0-9a-f]{64}", lock)) >= 2


@pytest.mark.slow
def test_a_fresh_clone_installs_the_locks_from_the_machines_own_python_and_pip(tmp_path):
    """The Makefile's own recipe, on a virtualenv that `python3.11 -m venv` makes with its bundled pip: the
    installed set is then exactly the two locks, plus the project, pip's own bundled tools and uv."""
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    done = subprocess.run(
        ["make", f"VENV={venv}", "venv"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=900
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    python = venv / "bin" / "python"
    beyond_the_locks = ["--allow", "tfx-inference-template", "--allow", "uv"]
    check = subprocess.run(
        [str(python), "-m", "tools.check_lock", "requirements.txt", "requirements-dev.txt", *beyond_the_locks],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert check.returncode == 0, check.stderr
    imported = subprocess.run([str(python), "-c", "import main, transforms.pipeline"], cwd=tmp_path)
    assert imported.returncode == 0
