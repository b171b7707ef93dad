"""--model_copies: every pattern's model loaded as Beam's shared (large) model answers exactly as a private copy,
in one worker process and across two; benchmarks/shared_memory.py measures the memory it saves."""

from __future__ import annotations

import pytest
from conftest import read_jsonl
from expect import assert_close

pytestmark = pytest.mark.slow

INPUTS = {
    "predict": "numbers.tfrecord",
    "postprocess": "numbers.jsonl",
    "keyed": "numbers.csv",
    "multi_parallel": "numbers.csv",
    "multi_sequence": "numbers.jsonl",
}


def _outputs(run) -> list:
    if run.output.endswith("predict"):
        import tensorflow as tf

        return sorted(r.numpy() for r in tf.data.TFRecordDataset(tf.io.gfile.glob(f"{run.output}-*.tfrecord")))
    return sorted((row["key"], str(row["input"]), str(row["predictions"])) for row in read_jsonl(run.output))


@pytest.mark.parametrize("pattern", list(INPUTS))
def test_a_shared_copy_answers_exactly_as_a_private_one(run_main, models_for, demo_data, tmp_path, pattern):
    runs = []
    for copies in ([], ["--model_copies=1"]):
        output = str(tmp_path / ("shared" if copies else "private") / pattern)
        run = run_main(
            f"--pattern={pattern}",
            f"--model_uris={models_for(pattern)}",
            f"--input={demo_data}/{INPUTS[pattern]}",
            "--progress=off",
            *copies,
            output=output,
        )
        assert run.returncode == 0, run.stderr
        assert "records read             100" in run.stdout and "reconciled               yes" in run.stdout
        runs.append(run)
    private, shared = (_outputs(run) for run in runs)
    assert len(private) == 100 and shared == private


def test_two_worker_processes_share_one_copy(run_main, demo_models, demo_data, tmp_path):
    run = run_main(
        "--pattern=keyed",
        f"--model_uris={demo_models['multiply_by_5']}",
        f"--input={demo_data}/numbers.csv",
        "--model_copies=1",
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=2",
        "--progress=off",
    )
    assert run.returncode == 0, run.stderr
    rows = run.rows()
    assert sorted(row["key"] for row in rows) == [f"device-{i:03d}" for i in range(100)]
    for row in rows:
        assert_close(row["predictions"][0]["outputs"]["y"][0], 5 * row["input"]["x"])
    assert "reconciled               yes" in run.stdout
