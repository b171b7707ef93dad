"""Build the demo assets: the x5 and x10 models of the TFX patterns post, a named-tensor Keras 3 export, and inputs."""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

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


WEATHER = ("clear", "rain", "snow")
_WEATHER_DELAY = {"clear": 0.0, "rain": 5.0, "snow": 15.0}


def delivery_minutes(distance_km: float, items: int, weather: str) -> float:
    """The rule the delivery model learns: 10 minutes, 3 a km, 1.5 an item, and 5 more in rain or 15 in snow."""
    return 10.0 + 3.0 * distance_km + 1.5 * items + _WEATHER_DELAY[weather]


def train_delivery_model() -> keras.Model:
    """A Keras model of three inputs of three dtypes: distance_km (float32), items (int64), weather (string).

    Exported with `model.export`, its serving signature takes those named tensors, as most Keras 3 models' do.
    It learns `delivery_minutes` to within a few seconds from 4,000 generated orders.
    """
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    distance = rng.uniform(0, 20, (4000, 1)).astype("float32")
    items = rng.integers(1, 30, (4000, 1))
    weather = rng.choice(WEATHER, (4000, 1))
    minutes = np.vectorize(delivery_minutes)(distance, items, weather).astype("float32")
    inputs = {
        "distance_km": keras.Input((1,), name="distance_km", dtype="float32"),
        "items": keras.Input((1,), name="items", dtype="int64"),
        "weather": keras.Input((1,), name="weather", dtype="string"),
    }
    features = keras.layers.Concatenate()(
        [
            keras.layers.Rescaling(1 / 20)(inputs["distance_km"]),
            keras.layers.Lambda(lambda v: tf.cast(v, "float32") / 30)(inputs["items"]),
            keras.layers.StringLookup(vocabulary=list(WEATHER), output_mode="one_hot")(inputs["weather"]),
        ]
    )
    model = keras.Model(inputs, {"minutes": keras.layers.Dense(1)(features)})
    model.compile(optimizer=keras.optimizers.Adam(0.3), loss="mse")
    # Keras takes strings as tensors, not NumPy arrays: the orders go in as a tf.data pipeline.
    orders = {"distance_km": distance, "items": items, "weather": tf.constant(weather)}
    model.fit(
        tf.data.Dataset.from_tensor_slices((orders, {"minutes": minutes})).batch(200),
        epochs=100,
        shuffle=False,
        verbose=0,
    )
    return model


def build_models(models_dir: Path) -> list[Path]:
    paths = []
    for factor in FACTORS:
        path = models_dir / f"multiply_by_{factor}"
        export_example_model(train_multiplier(factor), [FeatureSpec("x")], str(path))
        paths.append(path)
    path = models_dir / "delivery_minutes"
    train_delivery_model().export(str(path), verbose=False)
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
    build_deliveries(data_dir / "deliveries.csv")


def build_deliveries(path: Path, rows: int = 100) -> None:
    """Orders for the delivery model, its distance in a column `km` (--input_features=distance_km:km).

    Three cannot be served: 2.5 items (the int64 input takes whole numbers: an `encode` dead letter), a
    missing weather and a distance that is not a number (`parse` dead letters).
    """
    rng = random.Random(0)
    lines = [f"order-{i:03d},{rng.uniform(0, 20):.1f},{rng.randint(1, 29)},{rng.choice(WEATHER)}" for i in range(rows)]
    lines[10] = "order-010,4.0,2.5,rain"
    lines[20] = "order-020,7.5,3,"
    lines[30] = "order-030,far,3,snow"
    path.write_text("key,km,items,weather\n" + "".join(line + "\n" for line in lines))


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
