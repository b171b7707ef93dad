"""Cloud Storage end to end against gcp-storage-emulator: gs:// inputs, outputs, dead letters and models."""

from __future__ import annotations

import json
import os
import threading

import pytest
from expect import assert_close

from transforms.inference.model_cache import MANIFEST, local_model_path, stage_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bucket(gcs, demo_models, demo_data) -> str:
    name = "tfx-inference-test"
    gcs.client.create_bucket(name)
    for model, path in demo_models.items():
        gcs.upload_tree(path, name, f"models/{model}")
    blob = gcs.client.bucket(name).blob
    blob("input/numbers.csv").upload_from_filename(str(demo_data / "numbers.csv"))
    mixed = [json.dumps({"key": f"k{i}", "x": float(i)}) for i in range(20)] + ['{"key": "bad", "x": "nan?"}']
    blob("input/mixed.jsonl").upload_from_string("\n".join(mixed) + "\n")
    return name


def test_keyed_with_gs_everywhere(run_main, gcs, bucket):
    run = run_main(
        "--pattern=keyed",
        f"--model_uris=gs://{bucket}/models/multiply_by_5",
        f"--input=gs://{bucket}/input/mixed.jsonl",
        f"--dead_letter=gs://{bucket}/dead/keyed",
        output=f"gs://{bucket}/out/keyed",
        env=gcs.env,
    )
    assert run.returncode == 0, run.stderr
    rows = gcs.read_jsonl(bucket, "out/keyed")
    assert sorted(row["key"] for row in rows) == sorted(f"k{i}" for i in range(20))
    for row in rows:
        assert_close(row["predictions"][0]["outputs"]["y"][0], 5 * row["input"]["x"])
    letters = gcs.read_jsonl(bucket, "dead/keyed")
    assert [(d["key"], d["stage"], d["source"]) for d in letters] == [
        ("bad", "parse", f"gs://{bucket}/input/mixed.jsonl")
    ]
    assert "records read              21" in run.stdout


def test_multi_parallel_from_gs_models_on_two_worker_processes(run_main, gcs, bucket):
    run = run_main(
        "--pattern=multi_parallel",
        f"--model_uris=gs://{bucket}/models/multiply_by_5,gs://{bucket}/models/multiply_by_10",
        f"--input=gs://{bucket}/input/numbers.csv",
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=2",
        output=f"gs://{bucket}/out/parallel",
        env=gcs.env,
    )
    assert run.returncode == 0, run.stderr
    rows = gcs.read_jsonl(bucket, "out/parallel")
    assert len(rows) == 100
    for row in rows:
        assert [p["model"] for p in row["predictions"]] == ["multiply_by_5", "multiply_by_10"]
        assert_close(row["predictions"][0]["outputs"]["y"][0], 5 * row["input"]["x"])
        assert_close(row["predictions"][1]["outputs"]["y"][0], 10 * row["input"]["x"])


def test_a_missing_gs_model_fails_before_the_pipeline(run_main, gcs, bucket):
    run = run_main(
        "--pattern=keyed",
        f"--model_uris=gs://{bucket}/models/nothing_here",
        f"--input=gs://{bucket}/input/numbers.csv",
        output=f"gs://{bucket}/out/missing",
        env=gcs.env,
    )
    assert run.returncode == 2
    assert f"model gs://{bucket}/models/nothing_here has no readable saved_model.pb" in run.stderr


def test_staging_downloads_once_for_concurrent_loaders_and_verifies(gcs, bucket, tmp_path, monkeypatch):
    from apache_beam.io.filesystems import FileSystems

    uri = f"gs://{bucket}/models/multiply_by_10"
    local = str(tmp_path / "cache" / "m10")
    opened, open_object = [], FileSystems.open

    def counted_open(path, **kwargs):
        opened.append(path)
        return open_object(path, **kwargs)

    def downloads() -> int:
        return opened.count(f"{uri}/saved_model.pb")

    monkeypatch.setattr(FileSystems, "open", counted_open)
    results = []
    threads = [threading.Thread(target=lambda: results.append(stage_model(uri, local))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [local] * 4
    assert downloads() == 1, "four loaders starting together download the model once"
    assert stage_model(uri, local) == local and downloads() == 1, "a verified copy is used as it is"
    assert sorted(os.listdir(tmp_path / "cache")) == ["m10", "m10.lock"], "one copy, no leftover staging folders"
    with open(os.path.join(local, MANIFEST)) as f:
        manifest = json.load(f)
    assert {"saved_model.pb", "variables/variables.index"} <= set(manifest)
    variables = os.path.join(local, "variables", "variables.index")
    with open(variables, "r+b") as f:
        f.write(b"\x00corrupt")
    stage_model(uri, local)
    with open(variables, "rb") as f:
        assert not f.read().startswith(b"\x00corrupt"), "a copy that fails verification is downloaded again"
    assert downloads() == 2


def test_local_models_are_used_in_place():
    assert local_model_path("/models/m") == "/models/m"
    assert local_model_path("gs://b/models/m/") == local_model_path("gs://b/models/m")
    assert local_model_path("gs://b/models/m").rsplit("/", 1)[-1].startswith("m-")
