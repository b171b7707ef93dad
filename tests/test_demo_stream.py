"""make demo-stream: the summary a local streaming run ends with counts what the user saw come out."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tools.pubsub_emulator import missing_tools

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_the_streaming_summary_counts_the_rows_and_dead_letters_that_were_printed(demo_models, demo_data):
    missing = missing_tools()
    if missing:
        pytest.skip("the demo needs " + "; ".join(missing))
    models = next(iter(demo_models.values())).rsplit("/", 1)[0]
    done = subprocess.run(
        [sys.executable, "-m", "tools.demo_stream", f"--models={models}", f"--data={demo_data}"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    printed_rows = len(re.findall(r"^  prediction  ", done.stdout, re.M))
    printed_letters = len(re.findall(r"^  dead letter ", done.stdout, re.M))
    assert printed_rows > 0 and printed_letters == 4
    summary = {
        name: int(count)
        for name, count in re.findall(r"^  (records read|rows written|dead letters) +(\d+)", done.stdout, re.M)
    }
    assert summary == {
        "records read": printed_rows + printed_letters,
        "rows written": printed_rows,
        "dead letters": printed_letters,
    }, done.stdout
    assert "reconciled               yes" in done.stdout
    assert "lag" not in done.stdout, "the counts are what came out, not the local runner's lagging metrics"


def test_the_refresh_demo_shows_a_live_swap_with_every_record_once(demo_models):
    missing = missing_tools()
    if missing:
        pytest.skip("the demo needs " + "; ".join(missing))
    models = next(iter(demo_models.values())).rsplit("/", 1)[0]
    done = subprocess.run(
        [sys.executable, "-m", "tools.demo_refresh", f"--models={models}", "--records=150"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    ratios = re.findall(r"^  r-\d{4}  version (\d)  x=.*y/x=\s*([\d.]+)$", done.stdout, re.M)
    assert {version for version, _ in ratios} == {"1", "2"}, done.stdout
    assert all(float(ratio) in (0.0, {"1": 5.0, "2": 10.0}[version]) for version, ratio in ratios)
    assert "150 of 150 records came out, 0 of them twice" in done.stdout
    # The pipeline's own summary, printed when the demo stops it, tells the same story as the rows printed.
    by_version = Counter(version for version, _ in ratios)
    served = ", ".join(f"{version} ({count})" for version, count in sorted(by_version.items()))
    assert f"\n  demo versions served: {served}\n" in done.stdout, done.stdout
    assert re.search(rf"^  rows written +{len(ratios)}$", done.stdout, re.M), done.stdout
    assert re.search(rf"^  demo +{len(ratios)} ", done.stdout, re.M), "the model table counts the rows: " + done.stdout
