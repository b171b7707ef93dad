"""Many tiny models for routing tests and benchmarks: y = k * x, one per route, written in milliseconds each.

Exporting a SavedModel costs TensorFlow about half a second of tracing; 1,000 routes would take minutes. Every
route's model has the same graph and differs only in its one variable, so the graph (`saved_model.pb`) is exported
once and each route gets a copy of it beside a checkpoint of its own multiplier, written with SaveV2 under the
template's own tensor names (the TF1 loader, as tfx-bsl uses it, restores them by name).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import tensorflow as tf

SAVED_MODEL_PROTO = "saved_model.pb"
_MULTIPLIER_SLOT = "multiplier"


class _Multiply(tf.Module):
    def __init__(self):
        super().__init__()
        self.multiplier = tf.Variable(1.0, dtype=tf.float32, name=_MULTIPLIER_SLOT)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
        parsed = tf.io.parse_example(examples, {"x": tf.io.FixedLenFeature([1], tf.float32)})
        return {"y": parsed["x"] * self.multiplier}


def export_template(directory: Path) -> Path:
    """The shared graph: a SavedModel taking serialized Examples with a float feature x, returning y = k * x."""
    module = _Multiply()
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.serve})
    return directory


def _checkpoint_tensors(template: Path) -> dict[str, tf.Tensor]:
    reader = tf.train.load_checkpoint(str(template / "variables" / "variables"))
    return {name: tf.constant(reader.get_tensor(name)) for name in reader.get_variable_to_shape_map()}


def write_multiply_models(template: Path, targets: Iterable[tuple[Path, float]]) -> list[Path]:
    """A model at each target directory multiplying x by its factor: the template's graph, its own variable."""
    tensors = _checkpoint_tensors(template)
    multiplier = [name for name in tensors if name.startswith(_MULTIPLIER_SLOT) or "/multiplier/" in name]
    if len(multiplier) != 1:
        raise ValueError(f"template {template} has no single multiplier variable; its tensors: {sorted(tensors)}")
    names = sorted(tensors)
    written = []
    for directory, factor in targets:
        (directory / "variables").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template / SAVED_MODEL_PROTO, directory / SAVED_MODEL_PROTO)
        values = {**tensors, multiplier[0]: tf.constant(float(factor), tf.float32)}
        tf.raw_ops.SaveV2(
            prefix=str(directory / "variables" / "variables"),
            tensor_names=names,
            shape_and_slices=[""] * len(names),
            tensors=[values[name] for name in names],
        )
        written.append(directory)
    return written


def write_route_root(root: Path, factors: dict[str, float], version: str = "1") -> dict[str, Path]:
    """A model root: ROOT/<route>/<version>/ multiplying by the route's factor, for each route of `factors`."""
    with tempfile.TemporaryDirectory() as scratch:
        template = export_template(Path(scratch) / "template")
        targets = [(root / route / version, factor) for route, factor in factors.items()]
        write_multiply_models(template, targets)
    return {route: root / route / version for route in factors}


def main() -> None:
    parser = argparse.ArgumentParser(description="Write a model root of routes x1 ... xN, route xK multiplying by K.")
    parser.add_argument("root", type=Path)
    parser.add_argument("--routes", type=int, default=200)
    args = parser.parse_args()
    os.makedirs(args.root, exist_ok=True)
    write_route_root(args.root, {f"x{k}": float(k) for k in range(1, args.routes + 1)})
    print(f"{args.routes} routes under {args.root}")


if __name__ == "__main__":
    main()
