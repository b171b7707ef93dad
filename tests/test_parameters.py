"""The parameter registry drives argparse and the table of docs/parameters.md; they must not drift apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.docs import with_parameter_table
from transforms.parameters import PARAMETERS, build_parser

ROOT = Path(__file__).resolve().parent.parent


def test_every_registered_parameter_is_a_flag_of_main():
    flags = {action.dest for action in build_parser()._actions if action.option_strings} - {"help"}
    assert flags == {parameter.name for parameter in PARAMETERS}


def test_unknown_flags_are_left_for_beam():
    args, beam_args = build_parser().parse_known_args(
        ["--pattern=keyed", "--model_uris=m", "--input=i.csv", "--output=o", "--runner=DataflowRunner"]
    )
    assert args.pattern == "keyed" and beam_args == ["--runner=DataflowRunner"]


def test_the_docs_parameter_table_is_current():
    page = (ROOT / "docs" / "parameters.md").read_text()
    assert page == with_parameter_table(page), "docs/parameters.md is stale: run `make parameter-table`"


def test_enum_parameters_list_their_options_and_required_ones_have_no_default():
    for parameter in PARAMETERS:
        assert (parameter.param_type == "ENUM") == bool(parameter.options), parameter.name
        if not parameter.optional:
            assert parameter.default is None, parameter.name


def test_argparse_enforces_what_the_registry_says(capsys):
    parser = build_parser()
    required = [p.name for p in PARAMETERS if not p.optional]
    assert required == ["pattern", "model_uris"]
    for missing in required:
        given = [f"--{name}={'keyed' if name == 'pattern' else 'm'}" for name in required if name != missing]
        with pytest.raises(SystemExit):
            parser.parse_args(given)
        assert f"the following arguments are required: --{missing}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["--pattern=batched", "--model_uris=m"])
    assert "argument --pattern: invalid choice: 'batched'" in capsys.readouterr().err


def test_help_names_the_program_and_says_what_each_parameter_is(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100000")  # argparse wraps at the terminal's width, and breaks on hyphens
    text = " ".join(build_parser().format_help().split())
    assert text.startswith("usage: main.py [-h] --pattern {predict,postprocess,keyed,multi_parallel,multi_sequence}")
    assert "Batch and streaming ML inference with TFX RunInference on TensorFlow SavedModels." in text
    assert "Any other --flag is passed to Apache Beam as a pipeline option (--runner, --direct_num_workers, ...)." in (
        text
    )
    for parameter in PARAMETERS:
        assert " ".join(parameter.help.split()) in text, parameter.name
