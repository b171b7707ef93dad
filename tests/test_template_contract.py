"""metadata.json read by Google's own TemplateMetadata type (as the Dataflow API parses it), and the Flex
Template spec's values: what the launcher and the Console receive, not only which keys they find."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.cloud.dataflow_v1beta3.types import ParameterType, TemplateMetadata
from google.protobuf.json_format import ParseError

from tools.template import template_spec
from transforms.parameters import PARAMETERS, template_metadata

ROOT = Path(__file__).resolve().parent.parent
TEXT = (ROOT / "metadata.json").read_text()


def without_defaults(value):
    """JSON as the API echoes it: fields holding their proto default (false, "", [], {}) left out."""
    if isinstance(value, dict):
        return {k: without_defaults(v) for k, v in value.items() if v not in (False, "", [], {}, None)}
    if isinstance(value, list):
        return [without_defaults(item) for item in value]
    return value


def test_metadata_json_is_a_template_metadata_message_field_for_field():
    metadata = TemplateMetadata.from_json(TEXT)  # refuses unknown fields and unknown enum values
    echoed = json.loads(TemplateMetadata.to_json(metadata, use_integers_for_enums=False))
    assert without_defaults(echoed) == without_defaults(json.loads(TEXT)), "no field dropped or renamed"
    assert [p.name for p in metadata.parameters] == [p.name for p in PARAMETERS]
    for parameter, declared in zip(metadata.parameters, PARAMETERS, strict=True):
        assert (parameter.label, parameter.help_text) == (declared.label, declared.help), parameter.name
        assert parameter.is_optional == declared.optional, parameter.name
        assert parameter.param_type == ParameterType[declared.param_type], parameter.name
        assert [option.value for option in parameter.enum_options] == list(declared.options), parameter.name
        assert list(parameter.regexes) == list(declared.regexes), parameter.name
        expected_default = "" if declared.default is None else str(declared.default)
        assert parameter.default_value == expected_default, parameter.name


@pytest.mark.parametrize(
    "broken",
    [
        {"unknownField": 1},
        {"parameters": [{"name": "x", "label": "X", "helpText": "h", "paramType": "NOT_A_TYPE"}]},
        {"parameters": [{"name": "x", "label": "X", "helpText": "h", "isOptional": "sometimes"}]},
    ],
)
def test_template_metadata_refuses_what_the_api_would(broken):
    with pytest.raises(ParseError):
        TemplateMetadata.from_json(json.dumps({**json.loads(TEXT), **broken}))


def test_template_spec_values():
    image = "us-central1-docker.pkg.dev/p/tfx-inference/template:1.0"
    spec = template_spec(image, template_metadata())
    assert spec == {
        "image": image,
        "sdkInfo": {"language": "PYTHON"},
        "metadata": json.loads(TEXT),
        "defaultEnvironment": {"sdkContainerImage": image},
    }, "one image for the launcher and the workers, Python, and the committed metadata"
    assert TemplateMetadata.from_json(json.dumps(spec["metadata"])).name == "TFX RunInference"
