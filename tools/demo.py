"""Build the demo assets: the x5 and x10 models of the TFX patterns post, and small input files."""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from tools.convert import convert
from tools.export import FeatureSpec, export_example_model

FACTORS = (5, 10)


def train_multiplier(factor: int) -> keras.Model:
    """A linear Keras model that learns y = factor * x from x = 0..99, as in the TFX patterns post.

    The inputs are rescaled so that plain SGD converges in a few hundred steps to well within
    |y - kx| <= 0.01 |x| + 0.05 on [-1000, 1000].
    """
    keras.utils.set_random_seed(factor)
    x = np.arange(100, dtype="float32").reshape(-1, 1)
    model = keras.Sequential([keras.Input((1,), name="x"), keras.layers.Rescaling(0.01), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse", steps_per_execution=50)
    model.fit(np.tile(x, (500, 1)), np.tile(factor * x, (500, 1)), epochs=1, batch_size=100, verbose=0, shuffle=False)
    return model


def build_models(models_dir: Path) -> list[Path]:
    paths = []
    for factor in FACTORS:
        path = models_dir / f"multiply_by_{factor}"
        export_example_model(train_multiplier(factor), [FeatureSpec("x")], str(path))
        paths.append(path)
    return paths


def build_data(data_dir: Path, rows: int = 100) -> None:
    """numbers.{csv,jsonl,tfrecord}: keyed x = 0..rows-1; with_bad_records.jsonl: a few records to reject."""
    data_dir.mkdir(parents=True, exist_ok=True)
    records = [{"key": f"device-{i:03d}", "x": float(i)} for i in range(rows)]
    with open(data_dir / "numbers.csv", "w") as f:
        f.write("key,x\n" + "".join(f"{r['key']},{r['x']}\n" for r in records))
    with open(data_dir / "numbers.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    convert(str(data_dir / "numbers.jsonl"), str(data_dir / "numbers.tfrecord"))
    random.seed(0)
    mixed = [json.dumps({"key": f"sensor-{i}", "x": random.uniform(-1000, 1000)}) for i in range(20)]
    mixed[3] = '{"key": "sensor-3", "x": "not a number"}'
    mixed[7] = '{"key": "sensor-7", "x": '
    mixed[11] = '{"key": "sensor-11", "y": 2.0}'
    mixed[15] = '{"key": "sensor-15", "x": null}'
    with open(data_dir / "with_bad_records.jsonl", "w") as f:
        f.writelines(line + "\n" for line in mixed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", default="demo", help="where models/ and data/ are written")
    parser.add_argument("--what", choices=("all", "models", "data"), default="all")
    args = parser.parse_args()
    root = Path(args.dir)
    if args.what in ("all", "models"):
        for path in build_models(root / "models"):
            print(f"built {path}")
    if args.what in ("all", "data"):
        build_data(root / "data")
        print(f"built {root / 'data'}")


if __name__ == "__main__":
    main()
