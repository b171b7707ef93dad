"""The Flex Template contract: metadata.json from the registry, valid against the service's schema, and
every parameter accepted by main.py; the spec points launcher and workers at the same image."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import re2
from apache_beam.options.pipeline_options import PipelineOptions
from google.cloud.dataflow_v1beta3 import TemplateMetadata
from google.protobuf import json_format

from tools.template import metadata_json, template_spec
from transforms.parameters import PARAMETERS, build_parser, template_metadata

ROOT = Path(__file__).resolve().parent.parent
METADATA = json.loads((ROOT / "metadata.json").read_text())


def test_committed_metadata_is_current():
    assert (ROOT / "metadata.json").read_text() == metadata_json(), "metadata.json is stale: run `make metadata`"


def test_metadata_is_valid_template_metadata():
    schema = json.loads((ROOT / "schemas" / "template_metadata.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(METADATA, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {**METADATA, "parameters": [{"name": "x", "label": "X", "helpText": "h", "paramType": "ENUM"}]}, schema
        )
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**METADATA, "unknownField": 1}, schema)


def test_metadata_is_the_dataflow_api_template_metadata_of_a_batch_and_streaming_template():
    """Parsed by the Dataflow client's own TemplateMetadata message, which refuses a field the API lacks."""
    message = TemplateMetadata.pb(TemplateMetadata())
    json_format.ParseDict(METADATA, message)
    assert message.name == METADATA["name"] and len(message.parameters) == len(METADATA["parameters"])
    assert "input_subscription" in {p.name for p in message.parameters}, "Pub/Sub input makes the job streaming"
    assert message.streaming and message.supports_at_least_once and message.supports_exactly_once
    with pytest.raises(json_format.ParseError):
        json_format.ParseDict({**METADATA, "streamingMode": "EXACTLY_ONCE"}, TemplateMetadata.pb(TemplateMetadata()))


def test_metadata_and_main_accept_the_same_parameters():
    flags = {action.dest for action in build_parser()._actions if action.option_strings} - {"help"}
    assert {p["name"] for p in METADATA["parameters"]} == flags
    required = [f"--{p['name']}=value" for p in METADATA["parameters"] if not p["isOptional"]]
    _, unknown = build_parser().parse_known_args(
        [arg if not arg.startswith("--pattern") else "--pattern=keyed" for arg in required]
        + [f"--{p['name']}={p['defaultValue']}" for p in METADATA["parameters"] if "defaultValue" in p]
    )
    assert unknown == []


def test_launcher_owned_options_are_not_redeclared():
    beam_flags = set(PipelineOptions([]).get_all_options())
    assert {"temp_location", "sdk_container_image", "staging_location", "runner"} <= beam_flags
    assert not beam_flags & {p.name for p in PARAMETERS}, "a template parameter shadows a Beam pipeline option"


EXAMPLES = {
    "model_uris": (
        [
            "gs://my-bucket/models/multiply_by_5",
            "gs://b-1/m/a/,gs://b-1/m/b",
            "demo/models/multiply_by_5",
            "vertex://projects/my-project/locations/us-central1/endpoints/1234567890",
            "gs://b-1/m/screen,vertex://projects/p-1/locations/europe-west4/endpoints/fraud_v2",
        ],
        [
            "",
            "s3://bucket/model",
            "gs://UPPER/model",
            "gs://b/m,,gs://b/n",
            "a b",
            "vertex://endpoints/123",
            "vertex://projects/p/locations/l/endpoints/1/extra",
        ],
    ),
    "model_names": (["multiply_by_5", "a,b.c,d-e"], ["", "5x", "a,,b", "two words"]),
    "input": (
        ["gs://my-bucket/input/*.tfrecord.gz", "gs://my-bucket/rows-*.csv", "demo/data/numbers.jsonl"],
        ["", "gs://", "https://example.com/rows.csv", "a.csv,b.csv"],
    ),
    "output": (["gs://my-bucket/output/predictions", "out/keyed"], ["", "gs://Bad_Bucket/x", "bq://table"]),
    "dead_letter": (["gs://my-bucket/dead/letters"], ["ftp://host/x"]),
    "key_field": (["key", "device_id", "customer.id"], ["", "1st", "two words"]),
    "feature_types": (["count:int", "count:int,name:bytes,x:float"], ["", "count", "x:double", "x:int,"]),
    "input_features": (["age:years", "age:years,color:colour"], ["", "age", "age:", ":years", "age:years,"]),
    "row_input": (
        ["all", "none", "include:site", "include:a,b.c", "exclude:f_0,f_1"],
        ["", "some", "none:x", "include:", "include:a,,b", "exclude:a b", "include:a,"],
    ),
    "signature_name": (["serving_default", "predict"], ["", "serving default"]),
    "min_batch_size": (["1", "64"], ["0", "-1", "1.5", "ten"]),
    "max_batch_size": (["512", "4096"], ["0", "", "1e3"]),
    "window_seconds": (["60", "5"], ["0", "-60", "1.5", "1m"]),
    "model_refresh_seconds": (["60", "300"], ["0", "-60", "1.5", "1m"]),
    "chain_feature": (["x"], ["", "x y"]),
    "chain_output": (["y", "output_0"], ["", "y,z"]),
    "input_subscription": (
        ["projects/my-project/subscriptions/tfx-inference-input", "projects/p-12345/subscriptions/abc"],
        [
            "",
            "projects/my-project/topics/t",
            "my-subscription",
            "projects/my-project/subscriptions/ab",
            "projects//subscriptions/abc",
        ],
    ),
    "output_topic": (
        ["projects/my-project/topics/tfx-inference-predictions"],
        ["", "projects/my-project/subscriptions/s1x", "topics/abc", "projects/my-project/topics/1abc"],
    ),
    "dead_letter_topic": (["projects/my-project/topics/dead-letters"], ["projects/my-project/topics/x"]),
    "key_attribute": (["device_id", "key"], ["", "two words"]),
    "input_table": (
        ["my-project:inference.keyed_input", "inference.keyed_input", "my-project:ds_2.table-1"],
        ["", "my-project:inference", "my-project.inference.keyed_input", "a:b.c; DROP TABLE x", "bq://ds.t"],
    ),
    "output_table": (["my-project:inference.predictions"], ["inference", "my-project:inference.pre dictions"]),
    "dead_letter_table": (["my-project:inference.dead_letters"], ["my-project:inference.`x`"]),
    "input_query": (
        ["SELECT key, x FROM `p.d.t`", "  select *\nfrom d.t where x > 0", "WITH a AS (SELECT 1 AS x) SELECT * FROM a"],
        ["", "DELETE FROM d.t WHERE true", "DROP TABLE d.t", "selectx FROM t", "INSERT INTO d.t SELECT 1"],
    ),
    "temp_dataset": (["my-project:scratch", "scratch"], ["", "my-project:scratch.table", "my-project:"]),
    "vertex_api_endpoint": (
        ["europe-west4-aiplatform.googleapis.com", "http://127.0.0.1:8470", "https://10.1.2.3:443"],
        ["", "ftp://host", "http://host/path", "host:123456"],
    ),
    "remote_requests_in_flight": (["4", "16"], ["0", "-1", "1.5", "four"]),
    "remote_instances_per_request": (["64", "1"], ["0", "", "6e1"]),
    "remote_timeout_seconds": (["60", "5"], ["0", "-60", "1m"]),
    "remote_retry_seconds": (["300", "1"], ["0", "5m"]),
    "route_field": (["region", "key", "tenant_id"], ["", "two words", "a,b"]),
    "default_route": (["global", "eu-west1", "7"], ["", "a,b", "two words"]),
    "max_models_per_worker": (["20", "1000"], ["0", "-1", "1.5", "ten"]),
    "model_copies": (["1", "4"], ["0", "-1", "1.5", "one"]),
}


@pytest.mark.parametrize("parameter", [p for p in METADATA["parameters"] if "regexes" in p], ids=lambda p: p["name"])
def test_each_regex_accepts_real_values_and_rejects_wrong_ones(parameter):
    valid, invalid = EXAMPLES[parameter["name"]]
    for regex in parameter["regexes"]:
        for value in valid:
            assert re.fullmatch(regex, value), f"{parameter['name']} regex refuses {value!r}"
        for value in invalid:
            assert not re.fullmatch(regex, value), f"{parameter['name']} regex accepts {value!r}"


REGEXES = [(p["name"], regex) for p in METADATA["parameters"] for regex in p.get("regexes", ())]


def _javascript_matches(cases: list[tuple[str, str]]) -> list[bool]:
    """Whole-string matches of (regex, value) pairs by JavaScript's RegExp, as a browser form checks them."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: `apt-get install nodejs` (the Console checks parameters in JavaScript)")
    script = (
        "const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "console.log(JSON.stringify(cases.map(([r, v]) => new RegExp('^(?:' + r + ')$').test(v))));"
    )
    done = subprocess.run([node, "-e", script], input=json.dumps(cases), capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_every_regex_compiles_and_matches_alike_in_re2_python_and_javascript():
    """The service's engine is not documented; Google's services commonly use RE2, and the Console is JavaScript."""
    cases = []
    for name, regex in REGEXES:
        re2.compile(regex)  # raises re2.error, e.g. "invalid repetition size" above {1000}
        valid, invalid = EXAMPLES[name]
        cases += [(regex, value) for value in (*valid, *invalid)]
    python = [bool(re.fullmatch(regex, value)) for regex, value in cases]
    google = [bool(re2.fullmatch(regex, value)) for regex, value in cases]
    javascript = _javascript_matches(cases)
    verdicts = zip(cases, python, google, javascript, strict=True)
    assert python == google == javascript, [(case, p, g, j) for case, p, g, j in verdicts if not p == g == j]


def test_bigquery_names_up_to_1024_characters_pass_the_re2_regexes():
    regexes = dict(REGEXES)
    longest = f"my-project:{'d' * 1024}.{'t' * 1024}"
    assert re2.fullmatch(regexes["output_table"], longest)
    assert not re2.fullmatch(regexes["output_table"], f"my-project:{'d' * 1025}.t")
    assert re2.fullmatch(regexes["temp_dataset"], "d" * 1024) and not re2.fullmatch(regexes["temp_dataset"], "d" * 1025)


def test_every_parameter_with_free_text_has_regex_examples():
    free_text = {p["name"] for p in METADATA["parameters"] if p["paramType"] != "ENUM"}
    assert free_text == set(EXAMPLES)


def test_template_spec_uses_one_image_for_launcher_and_workers():
    image = "us-central1-docker.pkg.dev/p/tfx-inference/template:1.0"
    spec = template_spec(image, template_metadata())
    assert spec["image"] == spec["defaultEnvironment"]["sdkContainerImage"] == image
    assert spec["sdkInfo"] == {"language": "PYTHON"}
    assert spec["metadata"] == METADATA
