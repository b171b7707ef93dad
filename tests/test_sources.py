"""Input planning: formats from names, the first CSV header checked, clear errors before any run."""

from __future__ import annotations

import gzip

import pytest

from transforms.config import ParameterError, config_from_args
from transforms.parameters import build_parser
from transforms.reading.sources import format_of, plan_input


def config(pattern: str, *extra: str):
    args = ["--pattern=keyed", "--model_uris=m", f"--input={pattern}", "--output=o", *extra]
    return config_from_args(build_parser().parse_args(args))


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.csv", "csv"),
        ("a.CSV.gz", "csv"),
        ("gs://b/p/*.jsonl", "jsonl"),
        ("x.ndjson", "jsonl"),
        ("part-*.tfrecord.gz", "tfrecord"),
        ("data", None),
        ("a.json", None),
    ],
)
def test_format_of(name, kind):
    assert format_of(name) == kind


def test_csv_header_comes_from_the_first_file_with_one_read_through_compression(tmp_path):
    (tmp_path / "a.csv").write_text("\ufeffkey,x\nk,1\n")
    with gzip.open(tmp_path / "b.csv.gz", "wt") as f:
        f.write("key,x\nk,2\n")
    (tmp_path / "empty.csv").write_text("")
    plan = plan_input(config(str(tmp_path / "*.csv*")))
    assert (
        plan.format == "csv"
        and plan.header == ("key", "x")
        and plan.header_file.rsplit("/", 1)[1] in ("a.csv", "b.csv.gz")
    )


def test_a_csv_header_is_one_rfc4180_record(tmp_path):
    (tmp_path / "a.csv").write_text('\ufeff"key","x, in cm","two\nlines"\nk,1,2\n')
    assert plan_input(config(str(tmp_path / "a.csv"))).header == ("key", "x, in cm", "two\nlines")


def test_format_from_matched_files_or_parameter(tmp_path):
    (tmp_path / "part-0.jsonl").write_text("{}\n")
    assert plan_input(config(str(tmp_path / "part-*"))).format == "jsonl"
    (tmp_path / "blob").write_text("{}\n")
    assert plan_input(config(str(tmp_path / "blob"), "--input_format=jsonl")).format == "jsonl"
    with pytest.raises(ParameterError, match="cannot tell the format"):
        plan_input(config(str(tmp_path / "blob")))


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"a.csv": "key,x,x\n"}, "repeats column"),
        ({"a.csv": "key\n"}, "no feature column besides the key"),
        ({"a.csv": 'key,"x\n1,2\n'}, "no readable header row: its header is broken: CSV record starting at byte 0 "),
        ({"a.csv": b"key,\xff\n"}, "no readable header row: line is not valid UTF-8"),
    ],
)
def test_bad_csv_headers(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ParameterError, match=message):
        plan_input(config(str(tmp_path / "*.csv")))


def test_no_matching_files(tmp_path):
    with pytest.raises(ParameterError, match="no files match"):
        plan_input(config(str(tmp_path / "*.csv")))
