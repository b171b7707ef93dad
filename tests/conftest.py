"""Shared fixtures: demo models and data built once per session, and a runner for main.py as users run it."""

from __future__ import annotations

import glob
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory) -> dict[str, str]:
    from tools.demo import build_models

    paths = build_models(tmp_path_factory.mktemp("models"))
    return {path.name: str(path) for path in paths}


@pytest.fixture(scope="session")
def models_for(demo_models):
    """The --model_uris value for a pattern: x5 alone, or x5 then x10 for the multi_ patterns."""

    def models(pattern: str) -> str:
        if pattern.startswith("multi"):
            return f"{demo_models['multiply_by_5']},{demo_models['multiply_by_10']}"
        return demo_models["multiply_by_5"]

    return models


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    from tools.demo import build_data

    path = tmp_path_factory.mktemp("data")
    build_data(path)
    return path


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    output: str
    dead_letter: str

    def rows(self) -> list[dict]:
        return read_jsonl(self.output)

    def dead_letters(self) -> list[dict]:
        return read_jsonl(self.dead_letter)


def read_jsonl(prefix: str) -> list[dict]:
    rows = []
    for path in sorted(glob.glob(f"{prefix}-*-of-*.jsonl")):
        with open(path) as f:
            rows.extend(json.loads(line) for line in f)
    return rows


@pytest.fixture
def run_main(tmp_path):
    """Run main.py in a subprocess with the given arguments; --output defaults to a fresh folder."""

    def run(*args: str, output: str | None = None, timeout: int = 300) -> Run:
        output = output or str(tmp_path / "out" / "result")
        command = [sys.executable, str(ROOT / "main.py"), *args, f"--output={output}"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=tmp_path)
        return Run(done.returncode, done.stdout, done.stderr, output, f"{output}_dead_letter")

    return run


@pytest.fixture(scope="session")
def float_input_model(tmp_path_factory) -> str:
    """A SavedModel whose serving signature takes a float tensor, not serialized Examples."""
    import tensorflow as tf

    class Doubler(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
        def serve(self, x):
            return {"y": 2 * x}

    path = str(tmp_path_factory.mktemp("float_model") / "doubler")
    module = Doubler()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path
