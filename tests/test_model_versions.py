"""Bases of numbered model versions: resolved to the newest complete version, and every prediction names it."""

from __future__ import annotations

import glob

import pytest
from conftest import add_model_version
from expect import assert_close
from tensorflow.core.protobuf.tensor_bundle_pb2 import BundleHeaderProto
from tensorflow_serving.apis import prediction_log_pb2

from transforms.config import ModelSpec, ParameterError
from transforms.inference.model_versions import incomplete_reason, numbered_versions, resolve_model, shards_in_index


@pytest.fixture(scope="module")
def base(demo_models, tmp_path_factory) -> str:
    """Versions 1 (x5) and 2 (x10) complete, 3 half-written, and a folder whose name is no version number."""
    base = tmp_path_factory.mktemp("serving") / "fraud"
    add_model_version(demo_models["multiply_by_5"], base, 1)
    add_model_version(demo_models["multiply_by_10"], base, 2)
    add_model_version(demo_models["multiply_by_5"], base, 3, half_written=True)
    add_model_version(demo_models["multiply_by_5"], base, 0).rename(base / "latest")
    return str(base)


def test_a_base_resolves_to_its_newest_complete_version(base):
    assert [v.version for v in numbered_versions(base)] == ["3", "2", "1"], "newest first, numbers only"
    assert incomplete_reason(f"{base}/3") == "1 of its 1 variables data shards are missing (shard 0 first)"
    resolved = resolve_model(ModelSpec(base, "fraud"))
    assert resolved == ModelSpec(f"{base}/2", "fraud", version="2", base=base)


def test_a_plain_saved_model_directory_runs_as_given_with_no_version(demo_models):
    model = ModelSpec(demo_models["multiply_by_5"], "m5")
    assert resolve_model(model) == model and model.version is None


def test_the_index_header_says_how_many_shards_to_wait_for(tmp_path, demo_models):
    version = add_model_version(demo_models["multiply_by_5"], tmp_path, 7)
    index = version / "variables" / "variables.index"
    assert shards_in_index(index.read_bytes()) == 1, "TensorFlow's own index, read from its first entry"
    header = BundleHeaderProto(num_shards=3).SerializeToString()
    index.write_bytes(b"\x00\x00" + bytes([len(header)]) + header)  # a table entry: empty key, the header
    assert incomplete_reason(str(version)) == "its variables shards disagree on their count (1, 3)"
    (version / "variables" / "variables.data-00000-of-00001").rename(
        version / "variables" / "variables.data-00000-of-00003"
    )
    assert incomplete_reason(str(version)) == "2 of its 3 variables data shards are missing (shard 1 first)"
    (version / "variables" / "variables.data-00001-of-00003").write_bytes(b"")
    (version / "variables" / "variables.data-00002-of-00003").write_bytes(b"")
    assert incomplete_reason(str(version)) is None
    index.unlink()
    assert incomplete_reason(str(version)) == "it has no variables/variables.index"


def test_a_pinned_version_names_itself_and_its_base(base):
    from transforms.config import models_from_args

    (model,) = models_from_args("keyed", f"{base}/1", None)
    assert model.name == "fraud", "named after its base, not its number"
    assert resolve_model(model) == ModelSpec(f"{base}/1", "fraud", version="1", base=None)


def test_a_base_without_a_complete_version_is_refused_naming_why(tmp_path, demo_models):
    add_model_version(demo_models["multiply_by_5"], tmp_path, 5, half_written=True)
    with pytest.raises(ParameterError, match=r"version 5: 1 of its 1 variables data shards are missing"):
        resolve_model(ModelSpec(str(tmp_path), "m"))
    with pytest.raises(ParameterError, match="has no readable saved_model.pb; expected a SavedModel directory, or"):
        resolve_model(ModelSpec(str(tmp_path / "nothing"), "m"))


@pytest.mark.slow
def test_rows_name_the_version_that_made_them(run_main, base, demo_models, demo_data):
    run = run_main(
        "--pattern=multi_parallel",
        f"--model_uris={base},{demo_models['multiply_by_5']}",
        "--model_names=fraud,plain",
        f"--input={demo_data}/numbers.csv",
    )
    assert run.returncode == 0, run.stderr
    assert f"model fraud: version 2 of {base} ({base}/2)" in run.stdout
    assert "version 3 is not complete yet, so not taken" in run.stderr
    rows = run.rows()
    assert len(rows) == 100
    for row in rows:
        fraud, plain = row["predictions"]
        assert list(fraud) == ["model", "version", "outputs"]
        assert (fraud["model"], fraud["version"], plain["model"], plain["version"]) == ("fraud", "2", "plain", None)
        assert_close(fraud["outputs"]["y"][0], 10 * row["input"]["x"])
    assert "fraud versions served: 2 (100)" in run.stdout


@pytest.mark.slow
def test_prediction_logs_carry_the_version_in_model_spec(run_main, base, demo_data):
    import tensorflow as tf

    run = run_main("--pattern=predict", f"--model_uris={base}", f"--input={demo_data}/numbers.tfrecord")
    assert run.returncode == 0, run.stderr
    logs = []
    for path in glob.glob(f"{run.output}-*.tfrecord"):
        logs += [
            prediction_log_pb2.PredictionLog.FromString(r) for r in tf.data.TFRecordDataset(path).as_numpy_iterator()
        ]
    assert len(logs) == 100
    assert {log.predict_log.response.model_spec.version.value for log in logs} == {2}
    assert all(log.predict_log.response.model_spec.HasField("version") for log in logs)


def index_entry(value: bytes, shared: int = 0, key: bytes = b"", length: int | None = None) -> bytes:
    """A table block's first entry: shared-key length, key length, value length (varints), key, value."""
    length = len(value) if length is None else length
    varint = bytes([length & 0x7F | 0x80, length >> 7]) if length >= 0x80 else bytes([length])
    return bytes([shared, len(key)]) + varint + key + value


def test_an_index_header_is_read_only_from_an_entry_with_an_empty_key_and_all_its_bytes():
    header = BundleHeaderProto(num_shards=3).SerializeToString()
    padded = header + b"\x7a" + bytes([126 - len(header)]) + b"\x00" * (126 - len(header))  # an unknown field 15
    assert len(padded) == 128, "a value length of two varint bytes, the first 0x80"
    assert shards_in_index(index_entry(padded)) == 3
    assert shards_in_index(index_entry(b"\x7a\x00" + padded)) == 3, "130 bytes: both varint bytes carry bits"
    assert shards_in_index(index_entry(header)) == 3
    assert shards_in_index(index_entry(header, length=len(header) + 1)) is None, "a value cut short"
    assert shards_in_index(index_entry(header, shared=1)) is None
    assert shards_in_index(index_entry(header, key=b"k")) is None


def test_a_version_with_an_index_but_no_data_shard_says_so(tmp_path):
    version = tmp_path / "1"
    (version / "variables").mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"")
    (version / "variables" / "variables.index").write_bytes(b"not a table")
    assert incomplete_reason(str(version)) == "it has no variables data shard (variables/variables.data-00000-of-0000N)"


def test_a_base_given_with_a_slash_resolves_alike_and_a_pinned_version_too(base):
    assert resolve_model(ModelSpec(f"{base}/", "fraud")) == ModelSpec(f"{base}/2", "fraud", version="2", base=base)
    assert resolve_model(ModelSpec(f"{base}/1/", "fraud")) == ModelSpec(f"{base}/1/", "fraud", version="1")


def test_every_version_passed_over_is_named_in_the_refusal_and_the_log(tmp_path, demo_models, caplog):
    add_model_version(demo_models["multiply_by_5"], tmp_path, 5, half_written=True)
    (tmp_path / "6").mkdir()
    (tmp_path / "6" / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ParameterError) as refused:
        resolve_model(ModelSpec(str(tmp_path), "m"))
    assert str(refused.value) == (
        f"model {tmp_path} has no readable saved_model.pb; expected a SavedModel directory, or a base of numbered "
        "version directories with a complete version (<base>/<number>/saved_model.pb and its variables); "
        "version 6: it has no variables/variables.index; version 5: 1 of its 1 variables data shards are missing "
        "(shard 0 first)"
    )
    with pytest.raises(ParameterError) as refused:
        resolve_model(ModelSpec(str(tmp_path / "empty"), "m"))
    assert str(refused.value).endswith("(<base>/<number>/saved_model.pb and its variables)")
    add_model_version(demo_models["multiply_by_5"], tmp_path, 4)
    with caplog.at_level("WARNING"):
        assert resolve_model(ModelSpec(str(tmp_path), "m")).version == "4"
    assert caplog.messages == [
        f"model {tmp_path}: version 6 is not complete yet, so not taken: it has no variables/variables.index",
        f"model {tmp_path}: version 5 is not complete yet, so not taken: 1 of its 1 variables data shards are missing "
        "(shard 0 first)",
    ]
