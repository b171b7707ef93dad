"""A tiny run of the benchmark, so that it cannot rot: every variant measured, the report and chart written.
The numbers of a run this small are start-up, not throughput; `make bench` is the real thing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_the_benchmark_measures_every_variant_and_writes_its_report(tmp_path):
    if shutil.which("gcloud") is None or shutil.which("java") is None:
        pytest.skip("the streaming part of the benchmark needs gcloud's Pub/Sub emulator and Java")
    done = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks.bench", "--records=400", "--repeats=1", f"--out={tmp_path}"),
            *("--stream-rate=20", "--stream-seconds=2"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert {"raw toy", "floor toy", "naive toy", "raw heavy", "floor heavy", "naive heavy", "postprocess heavy"} <= set(
        report["results"]
    )
    for pattern in ("predict", "postprocess", "keyed", "multi_parallel", "multi_sequence"):
        result = report["results"][f"{pattern} toy"]
        assert result["records"] == 400 and result["throughput"] > 0 and result["peak_mb"] > 100
    assert report["results"]["postprocess toy, 2 worker processes"]["model_loads"] == 2
    assert report["streaming"]["published"] == 40 and len(report["streaming"]["latencies_ms"]) == 40
    assert len(report["targets"]) == 12
    assert "| target | value | goal | met |" in (tmp_path / "latest.md").read_text()
    assert (tmp_path / "latest.png").read_bytes().startswith(b"\x89PNG")
