"""--row_input: what a row carries of its input, checked at launch, followed by rows, messages and table rows."""

from __future__ import annotations

import json

import pytest

from transforms.config import ParameterError, RowInput, config_from_args
from transforms.parameters import build_parser
from transforms.records.parsing import Record
from transforms.writing.bigquery import prediction_table_row
from transforms.writing.sinks import EncodeRow, pubsub_message

FEATURES = {"x": 2.5, "site": "north", "tags": [1.0, 2.0]}


def parse(*argv: str):
    return config_from_args(build_parser().parse_args(["--input=in.csv", "--output=out/x", "--model_uris=m", *argv]))


@pytest.mark.parametrize(
    ("text", "chosen"),
    [
        ("all", FEATURES),
        ("none", {}),
        ("include:tags,x", {"x": 2.5, "tags": [1.0, 2.0]}),
        ("include:absent", {}),
        ("exclude:x", {"site": "north", "tags": [1.0, 2.0]}),
        ("exclude:x,site,tags", {}),
    ],
)
def test_a_row_carries_the_features_row_input_chooses_in_the_records_order(text, chosen):
    assert list(RowInput.parse(text).of(FEATURES).items()) == list(chosen.items())


def test_all_is_the_default_and_hands_the_features_on_as_they_are():
    config = parse("--pattern=postprocess")
    assert config.row_input == RowInput("all", ())
    assert config.row_input.of(FEATURES) is FEATURES
    assert parse("--pattern=keyed", "--row_input=include:a,b").row_input == RowInput("include", ("a", "b"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--pattern=postprocess", "--row_input=some"],
            "--row_input=some is not one of all, none, include:FIELD[,FIELD...] or exclude:FIELD[,FIELD...]",
        ),
        (
            ["--pattern=postprocess", "--row_input=none:x"],
            "--row_input=none:x is not one of all, none, include:FIELD[,FIELD...] or exclude:FIELD[,FIELD...]",
        ),
        (
            ["--pattern=postprocess", "--row_input=include:"],
            "--row_input=include: is not one of all, none, include:FIELD[,FIELD...] or exclude:FIELD[,FIELD...]",
        ),
        (
            ["--pattern=postprocess", "--row_input=include:x,,y"],
            "--row_input=include:x,,y is not one of all, none, include:FIELD[,FIELD...] or exclude:FIELD[,FIELD...]",
        ),
        (["--pattern=postprocess", "--row_input=exclude:x,y,x"], "--row_input names field(s) x twice"),
        (
            ["--pattern=postprocess", "--row_input=include:x,id", "--key_field=id"],
            "--row_input names the key field 'id'; a row always carries the key apart, in `key`",
        ),
        (
            ["--pattern=predict", "--row_input=none"],
            "--row_input chooses what a JSON row carries of its input; --pattern=predict writes PredictionLogs, "
            "which carry the Example the model saw: leave --row_input out",
        ),
    ],
)
def test_a_row_input_that_cannot_be_followed_is_refused(argv, message):
    with pytest.raises(ParameterError) as refused:
        parse(*argv)
    assert str(refused.value) == message


RESULT = (
    Record("id-1", "device-1", {"x": 2.5, "site": "north"}, b"raw", "src"),
    [{"model": "m", "version": "7", "outputs": {"y": [12.5]}}],
    "7",
)


def test_rows_messages_and_table_rows_all_follow_row_input():
    everything = EncodeRow()(RESULT)
    key_only = EncodeRow(RowInput("none"))(RESULT)
    site = EncodeRow(RowInput("include", ("site",)))(RESULT)
    assert everything.payload == (
        b'{"key":"device-1","input":{"x":2.5,"site":"north"},'
        b'"predictions":[{"model":"m","version":"7","outputs":{"y":[12.5]}}]}'
    )
    assert (
        key_only.payload
        == b'{"key":"device-1","input":{},"predictions":[{"model":"m","version":"7","outputs":{"y":[12.5]}}]}'
    )
    assert site.payload == (
        b'{"key":"device-1","input":{"site":"north"},"predictions":[{"model":"m","version":"7","outputs":{"y":[12.5]}}]}'
    )
    message = pubsub_message(key_only)
    assert (message.data, message.attributes) == (
        key_only.payload,
        {"record_id": "id-1", "key": "device-1", "version": "7"},
    )
    assert prediction_table_row(key_only.payload, "id-1", json_as_text=False)["input"] == {}
    assert prediction_table_row(key_only.payload, "id-1", json_as_text=True)["input"] == "{}"
    assert prediction_table_row(site.payload, "id-1", json_as_text=True)["input"] == '{"site":"north"}'


def _records(path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return str(path)


@pytest.mark.parametrize(
    ("row_input", "inputs"),
    [
        ("none", [{}, {}]),
        ("include:site", [{"site": "north"}, {"site": "south"}]),
        ("exclude:site", [{"x": 1.0}, {"x": 2.0}]),
    ],
)
def test_a_run_writes_rows_with_the_input_asked_for_and_dead_letters_with_the_raw_record(
    run_main, float_input_model, tmp_path, row_input, inputs
):
    lines = [{"key": "a", "x": 1.0, "site": "north"}, {"key": "b", "x": 2.0, "site": "south"}, {"key": "c", "x": "?"}]
    source = _records(tmp_path / "sites.jsonl", lines)
    run = run_main(
        "--pattern=postprocess",
        f"--model_uris={float_input_model}",
        f"--input={source}",
        "--feature_types=site:bytes",
        f"--row_input={row_input}",
        "--progress=off",
    )
    assert run.returncode == 0, run.stderr
    rows = sorted(run.rows(), key=lambda row: row["key"])
    assert [(row["key"], row["input"], row["predictions"][0]["outputs"]) for row in rows] == [
        ("a", inputs[0], {"y": [2.0]}),
        ("b", inputs[1], {"y": [4.0]}),
    ]
    (letter,) = run.dead_letters()
    assert (letter["key"], letter["stage"], letter["raw"]) == ("c", "parse", json.dumps(lines[2]))


def test_a_field_the_input_does_not_have_is_refused_at_launch(run_main, demo_models, demo_data, tmp_path):
    source = _records(tmp_path / "sites.jsonl", [{"key": "a", "x": 1.0, "site": "north"}])
    run = run_main(
        "--pattern=postprocess",
        f"--model_uris={demo_models['multiply_by_5']}",
        f"--input={source}",
        "--row_input=include:site,sight",
    )
    assert run.returncode == 2
    assert (
        f"--row_input=include:site,sight names 'sight', not among the input's fields: the first record of "
        f"{source} has x, site" in run.stderr
    )
    run = run_main(
        "--pattern=keyed",
        f"--model_uris={demo_models['multiply_by_5']}",
        f"--input={demo_data}/numbers.csv",
        "--row_input=exclude:y,z",
    )
    assert run.returncode == 2
    assert (
        f"--row_input=exclude:y,z names 'y', 'z', not among the input's fields: the CSV header of "
        f"{demo_data}/numbers.csv has x" in run.stderr
    )
    assert "Traceback" not in run.stderr
