"""tools.check_lock, the image's last build step: run in a fresh virtualenv, standard library only, as in the image."""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

import pytest

from tools.check_lock import lock_differences, locked_versions, normalized

ROOT = Path(__file__).resolve().parent.parent


def test_the_project_lock_is_read_pin_by_pin():
    locked = locked_versions((ROOT / "requirements.txt").read_text())
    assert locked["apache-beam"] == "2.77.0" and locked["tfx-bsl"] == "1.21.0" and locked["tensorflow"] == "2.21.0"
    assert "pip" not in locked, "pip-compile leaves the installer out"


def test_missing_extra_and_other_versions_are_each_named():
    locked = {"numpy": "1.26.4", "orjson": "3.10.0"}
    installed = {"numpy": "2.1.0", "scipy": "1.14.0", "pip": "26.3", "tfx-inference-template": "0.1.0"}
    assert lock_differences(locked, installed, ["tfx_inference_template"]) == [
        "orjson==3.10.0 is locked but not installed",
        "numpy is 2.1.0, the lock says 1.26.4",
        "scipy==1.14.0 is installed but not in the lock",
    ]
    assert lock_differences(locked, {**locked, "pip": "26.3"}) == []


@pytest.fixture(scope="module")
def fresh_python(tmp_path_factory) -> tuple[str, dict[str, str]]:
    """A new virtualenv's Python and what it holds (pip, and setuptools where ensurepip still brings it)."""
    folder = tmp_path_factory.mktemp("fresh-venv")
    venv.create(folder, with_pip=True)
    python = str(folder / "bin" / "python")
    listed = subprocess.run([python, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True)
    installed = dict(line.split("==") for line in listed.stdout.split())
    return python, installed


def _check(python: str, lock: Path, *allow: str) -> subprocess.CompletedProcess:
    command = [python, "-m", "tools.check_lock", str(lock), *(f"--allow={name}" for name in allow)]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT)


def test_a_fresh_environment_passes_exactly_its_own_lock_and_fails_any_other(fresh_python, tmp_path):
    python, installed = fresh_python
    others = {name: version for name, version in installed.items() if name != "pip"}
    lock = tmp_path / "requirements.txt"
    lock.write_text("".join(f"{name}=={version} \\\n    --hash=sha256:0\n" for name, version in others.items()))
    done = _check(python, lock)
    assert done.returncode == 0, done.stderr
    assert f"the {len(others)} locked packages are installed, and nothing else" in done.stdout

    lock.write_text("".join(f"{name}=={version}\n" for name, version in others.items()) + "numpy==1.26.4\n")
    done = _check(python, lock)
    assert done.returncode == 1
    assert "check_lock: numpy==1.26.4 is locked but not installed" in done.stderr

    lock.write_text("")
    done = _check(python, lock)
    assert done.returncode == (1 if others else 0)
    for name, version in others.items():
        assert f"check_lock: {normalized(name)}=={version} is installed but not in the lock" in done.stderr
    assert _check(python, lock, *others).returncode == 0, "--allow names what may be installed beyond the lock"
