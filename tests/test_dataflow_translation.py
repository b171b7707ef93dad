"""Every pattern translates for Dataflow (DataflowRunner --dry_run=True) and submits without waiting;
parameter errors still fail before submission. Run as the Flex Template launcher runs main.py."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

DATAFLOW = [
    "--runner=DataflowRunner",
    "--dry_run=True",
    "--project=test-project",
    "--region=us-central1",
    "--temp_location=gs://test-bucket/tmp",
]


@pytest.mark.parametrize("pattern", ["predict", "postprocess", "keyed", "multi_parallel", "multi_sequence"])
def test_each_pattern_translates_for_dataflow(run_main, models_for, demo_data, pattern):
    models = models_for(pattern)
    run = run_main(
        f"--pattern={pattern}",
        f"--model_uris={models}",
        f"--input={demo_data}/numbers.csv",
        *DATAFLOW,
        output="gs://test-bucket/out/result",
    )
    assert run.returncode == 0, run.stderr
    assert f"pattern {pattern} submitted to DataflowRunner" in run.stdout
    assert "records read" not in run.stdout, "the launcher must not wait for the job"


def test_parameter_errors_fail_before_submission(run_main, demo_models, demo_data):
    run = run_main(
        "--pattern=multi_sequence",
        f"--model_uris={demo_models['multiply_by_5']}",
        f"--input={demo_data}/numbers.csv",
        *DATAFLOW,
        output="gs://test-bucket/out/result",
    )
    assert run.returncode == 2
    assert "runs two or more models" in run.stderr
    assert "submitted" not in run.stdout
