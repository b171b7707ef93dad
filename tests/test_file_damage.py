"""Damaged TFRecord files, counted exactly: every record before the damage becomes a row, and the rest of the
file is one `read` dead letter naming the byte offset where the first unreadable record starts."""

from __future__ import annotations

import re

import pytest
import tensorflow as tf

from transforms.records.examples import encode_example

pytestmark = pytest.mark.slow


def write_tfrecords(path, name: str, count: int) -> list[int]:
    """`count` keyed Examples; the byte offset where each record starts."""
    offsets, offset = [], 0
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(count):
            data = encode_example({"key": f"{name}-{i}", "x": float(i)})
            writer.write(data)
            offsets.append(offset)
            offset += 16 + len(data)  # length, its CRC, the data, its CRC
    return offsets


def offset_named(letter: dict) -> int:
    return int(re.search(r"cannot be read past byte (\d+)", letter["message"]).group(1))


def test_each_kind_of_damage_keeps_exactly_the_records_before_it(run_main, models_for, tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    starts = {name: write_tfrecords(folder / f"{name}.tfrecord", name, 6) for name in ("cut", "flipped", "header")}
    cut = folder / "cut.tfrecord"
    cut.write_bytes(cut.read_bytes()[:-10])  # the sixth record loses its last bytes
    flipped = bytearray((folder / "flipped.tfrecord").read_bytes())
    flipped[starts["flipped"][3] + 20] ^= 0xFF  # a bit error in the data of the fourth record
    (folder / "flipped.tfrecord").write_bytes(bytes(flipped))
    header = folder / "header.tfrecord"
    header.write_bytes(header.read_bytes()[: starts["header"][2] + 7])  # stops inside the third record's header

    run = run_main("--pattern=keyed", f"--model_uris={models_for('keyed')}", f"--input={folder}/*.tfrecord")
    assert run.returncode == 0, run.stderr
    kept = {}
    for row in run.rows():
        name, index = row["key"].rsplit("-", 1)
        kept.setdefault(name, []).append(int(index))
    assert {name: sorted(found) for name, found in kept.items()} == {
        "cut": [0, 1, 2, 3, 4],
        "flipped": [0, 1, 2],
        "header": [0, 1],
    }
    letters = {letter["source"].rsplit("/", 1)[-1]: letter for letter in run.dead_letters()}
    assert {name: (letter["stage"], offset_named(letter)) for name, letter in letters.items()} == {
        "cut.tfrecord": ("read", starts["cut"][5]),
        "flipped.tfrecord": ("read", starts["flipped"][3]),
        "header.tfrecord": ("read", starts["header"][2]),
    }, "one read dead letter per file, naming the offset where its first unreadable record starts"
    assert "records read              13" in run.stdout and "reconciled               yes" in run.stdout
