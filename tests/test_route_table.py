"""The route table: a model root's subdirectories, a JSON object or a CSV file, read into route -> model, or refused
with a message that names the table and what is wrong."""

from __future__ import annotations

import pytest

from transforms.config import ParameterError
from transforms.inference.route_table import read_route_table, route_text


def _model(directory, versions: tuple[str, ...] = ()) -> None:
    for path in [directory / version for version in versions] or [directory]:
        path.mkdir(parents=True)
        (path / "saved_model.pb").write_bytes(b"")


def test_a_model_root_lists_each_subdirectory_holding_a_model_or_numbered_versions(tmp_path):
    _model(tmp_path / "eu", ("1", "2"))
    _model(tmp_path / "us")  # a plain SavedModel directory
    _model(tmp_path / "apac" / "nested" / "deeper")  # not a route: its model is two levels down
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not a route")
    assert read_route_table(str(tmp_path)) == {"eu": f"{tmp_path}/eu", "us": f"{tmp_path}/us"}


def test_a_json_table_maps_routes_to_models_relative_to_its_folder(tmp_path):
    table = tmp_path / "routes.json"
    table.write_text('{"us": "/models/us/", "eu": "models/eu", "asia": "gs://bucket/asia"}')
    assert read_route_table(str(table)) == {
        "asia": "gs://bucket/asia",
        "eu": f"{tmp_path}/models/eu",
        "us": "/models/us",
    }


def test_a_csv_table_has_the_header_route_model(tmp_path):
    table = tmp_path / "routes.csv"
    table.write_text("route,model\nus,/m/us\n\n7,gs://b/seven\n")
    assert read_route_table(str(table)) == {"7": "gs://b/seven", "us": "/m/us"}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("r.json", "{not json", "route table {table} is not valid JSON: Expecting property name enclosed in double"),
        ("r.json", '["us"]', "route table {table} is JSON but not an object of route -> model"),
        ("r.json", '{"us": 3}', "route table {table}: route 'us' maps to 3; expected a non-empty route"),
        ("r.json", '{"us": "http://x/m"}', "route table {table}: model 'http://x/m' is neither a local path nor"),
        ("r.json", "{}", "route table {table} lists no routes"),
        ("r.csv", "name,path\nus,/m\n", "route table {table} must start with the header route,model; found name,path"),
        ("r.csv", "route,model\nus\n", "route table {table}, line 2: expected route,model; got us"),
        ("r.csv", "route,model\nus,/a\nus,/b\n", "route table {table}, line 3: route 'us' is listed twice"),
        ("r.csv", b"route,model\n\xff,/a\n", "route table {table} is not UTF-8 text (invalid start byte at byte 12)"),
    ],
)
def test_a_table_that_does_not_parse_is_refused_naming_it(tmp_path, name, text, message):
    table = tmp_path / name
    table.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ParameterError) as raised:
        read_route_table(str(table))
    assert str(raised.value).startswith(message.format(table=table))


def test_a_missing_table_or_an_empty_root_is_refused(tmp_path):
    with pytest.raises(ParameterError, match=r"route table .*missing.json cannot be read \("):
        read_route_table(str(tmp_path / "missing.json"))
    with pytest.raises(ParameterError, match=r"lists no routes: expected a directory whose subdirectories are models"):
        read_route_table(str(tmp_path))


@pytest.mark.parametrize(
    ("value", "route"),
    [("eu", "eu"), (b"eu", "eu"), (7, "7"), (7.0, "7"), (7.5, "7.5"), ("", None), (None, None)],
)
def test_a_route_value_is_text_and_a_whole_number_has_no_decimal_point(value, route):
    assert route_text(value) == route


def test_a_route_of_several_values_is_refused():
    with pytest.raises(ValueError, match="^has 2 values; a route is one value$"):
        route_text(["eu", "us"])
