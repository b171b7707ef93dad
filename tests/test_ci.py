""".ci/run: it refuses, naming the tool, to run the suite on a machine that lacks a tool it cannot install, and
otherwise runs exactly the README's test command."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def machine_without(tmp_path: Path, left_out: set[str]) -> dict[str, str]:
    """This machine's PATH as one folder of links, less the tools `left_out`, with a `make` that only records
    its call."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        for program in Path(folder).glob("*") if Path(folder).is_dir() else []:
            link = bin_dir / program.name
            if program.name not in left_out and not link.exists() and not link.is_symlink():
                link.symlink_to(program)
    for tool in left_out:
        assert shutil.which(tool, path=str(bin_dir)) is None
    (bin_dir / "make").unlink(missing_ok=True)
    (bin_dir / "make").write_text(f'#!/bin/bash\necho "$@" > {tmp_path / "make-called"}\n')
    (bin_dir / "make").chmod(0o755)
    return {**os.environ, "PATH": str(bin_dir)}


def run_ci(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / ".ci/run")], env=env, capture_output=True, text=True, timeout=120)


def test_with_every_tool_it_runs_the_readmes_test_command(tmp_path):
    done = run_ci(machine_without(tmp_path, set()))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "make-called").read_text() == "test\n"
    assert "make test" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("tool", ["terraform", "gcloud"])
def test_a_tool_no_registry_has_stops_it_before_the_suite_by_name(tmp_path, tool):
    done = run_ci(machine_without(tmp_path, {tool}))
    assert done.returncode == 1
    assert "cannot run the whole suite; missing:" in done.stderr and f"  - {tool}" in done.stderr
    assert not (tmp_path / "make-called").exists()
