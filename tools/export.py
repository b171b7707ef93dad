"""Export a Keras model as a SavedModel whose serving signature takes serialized tf.train.Examples."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

SERVING_SIGNATURE = "serving_default"
EXAMPLES_INPUT = "examples"

_DTYPES = {"float": tf.float32, "int": tf.int64, "bytes": tf.string}


@dataclass(frozen=True)
class FeatureSpec:
    """One model input read from the Example: its feature name, type and length."""

    name: str
    type: str = "float"
    length: int = 1

    @classmethod
    def parse(cls, text: str) -> FeatureSpec:
        """Read `name[:type[:length]]`, e.g. `x`, `x:float`, `pixels:float:784`."""
        parts = text.split(":")
        if not 1 <= len(parts) <= 3 or not parts[0]:
            raise ValueError(f"feature {text!r} is not of the form name[:type[:length]]")
        kind = parts[1] if len(parts) > 1 else "float"
        if kind not in _DTYPES:
            raise ValueError(f"feature {text!r} has type {kind!r}; expected one of {sorted(_DTYPES)}")
        try:
            length = int(parts[2]) if len(parts) > 2 else 1
        except ValueError:
            raise ValueError(f"feature {text!r} has length {parts[2]!r}; expected a positive integer") from None
        if length < 1:
            raise ValueError(f"feature {text!r} has length {length}; expected a positive integer")
        return cls(parts[0], kind, length)

    def parsing_spec(self) -> tf.io.FixedLenFeature:
        return tf.io.FixedLenFeature([self.length], _DTYPES[self.type])


def export_example_model(
    model: keras.Model,
    features: list[FeatureSpec],
    export_dir: str,
    output_name: str = "y",
) -> None:
    """Write `model` to `export_dir` with a `serving_default` signature taking serialized Examples.

    The model is called with the single parsed feature tensor when it has one input, and with a
    dict keyed by feature name otherwise. `keras.export.ExportArchive` is used because tfx-bsl loads
    SavedModels with the TF1 loader, which cannot restore a Keras 3 model saved any other way.
    """
    if not features:
        raise ValueError("at least one --feature is needed to build the Example parser")
    parsing_spec = {feature.name: feature.parsing_spec() for feature in features}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
    def serve(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(examples, parsing_spec)
        inputs = parsed[features[0].name] if len(features) == 1 else parsed
        return {output_name: model(inputs)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SERVING_SIGNATURE, serve)
    archive.write_out(export_dir, verbose=False)
