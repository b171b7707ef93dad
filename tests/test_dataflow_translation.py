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


@pytest.mark.parametrize(
    "source",
    ["--input_table=test-project:source.devices", "--input_query=SELECT key, x FROM `test-project.source.devices`"],
)
def test_bigquery_sources_and_sinks_translate_for_dataflow(run_main, models_for, source):
    """The query source cannot run against bqemulator (it does not fill a query job's destination table),
    so its translation is what is proven here."""
    run = run_main(
        "--pattern=keyed",
        f"--model_uris={models_for('keyed')}",
        source,
        *(["--temp_dataset=test-project:scratch"] if "query" in source else []),
        "--output_table=test-project:inference.predictions",
        "--dead_letter_table=test-project:inference.dead_letters",
        *DATAFLOW,
        output=None,
    )
    assert run.returncode == 0, run.stderr
    assert "pattern keyed submitted to DataflowRunner" in run.stdout


@pytest.mark.parametrize("pattern", ["predict", "postprocess", "keyed", "multi_parallel", "multi_sequence"])
def test_each_pattern_translates_for_dataflow_with_a_named_tensor_model(run_main, demo_models, demo_data, pattern):
    """The Keras 3 export of the demo, fed from CSV columns; the multi_ patterns run it twice, chained via `km`."""
    model = demo_models["delivery_minutes"]
    models = (
        (f"--model_uris={model},{model}", "--model_names=first,second")
        if "multi" in pattern
        else (f"--model_uris={model}",)
    )
    run = run_main(
        f"--pattern={pattern}",
        *models,
        f"--input={demo_data}/deliveries.csv",
        "--feature_types=weather:bytes",
        "--input_features=distance_km:km",
        "--chain_feature=km",
        *DATAFLOW,
        output="gs://test-bucket/out/result",
    )
    assert run.returncode == 0, run.stderr
    assert f"pattern {pattern} submitted to DataflowRunner" in run.stdout


@pytest.mark.parametrize("pattern", ["predict", "postprocess", "keyed", "multi_parallel", "multi_sequence"])
def test_each_pattern_translates_as_a_refreshing_stream_of_versioned_models(run_main, demo_models, tmp_path, pattern):
    from conftest import add_model_version

    bases = []
    for name in ("multiply_by_5", "multiply_by_10")[: 2 if pattern.startswith("multi") else 1]:
        add_model_version(demo_models[name], tmp_path / "serving" / name, 1732700000)
        bases.append(str(tmp_path / "serving" / name))
    run = run_main(
        f"--pattern={pattern}",
        f"--model_uris={','.join(bases)}",
        "--input_subscription=projects/test-project/subscriptions/records",
        "--output_topic=projects/test-project/topics/rows",
        "--dead_letter_topic=projects/test-project/topics/dead-letters",
        "--model_refresh_seconds=60",
        *DATAFLOW,
        output=None,
    )
    assert run.returncode == 0, run.stderr
    assert f"model multiply_by_5: version 1732700000 of {bases[0]}" in run.stdout
    assert f"pattern {pattern} submitted to DataflowRunner" in run.stdout
