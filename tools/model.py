"""The model tool: inspect a SavedModel's signatures, or give a Keras model a serialized-Example signature.

python -m tools.model inspect demo/models/multiply_by_5
python -m tools.model inspect demo/models/penguins --input_features=bill_mm:bill_length_mm
python -m tools.model add-signature my_model.keras exported/ --feature x:float --feature count:int
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from types import MappingProxyType

from transforms.config import ParameterError, parse_input_features
from transforms.inference.named_tensors import named_inputs
from transforms.inference.signatures import (
    CLASSIFY,
    EXAMPLES,
    NAMED_TENSORS,
    REGRESS,
    SERVE_TAG,
    Signature,
    checked_signature,
    read_saved_model,
    signatures_by_tags,
)


def _shape(shape: tuple[int, ...] | None) -> str:
    return "unknown rank" if shape is None else "(" + ", ".join(str(d) for d in shape) + ")"


def describe(uri: str, input_features: Mapping[str, str] = MappingProxyType({})) -> str:
    """Every MetaGraph and signature of the model, like `saved_model_cli show --all`, with what the template does.

    Each signature says its kind (serialized Example, classify, regress, named tensors) or why it cannot be
    served; for named tensors, the input each feature becomes (as --input_features maps them).
    """
    lines = []
    for tags, signatures in signatures_by_tags(read_saved_model(uri)).items():
        lines.append(f"MetaGraph with tag-set: {', '.join(tags)}")
        for signature in signatures:
            lines.extend(_describe_signature(uri, signature, input_features, served=SERVE_TAG in tags))
    return "\n".join(lines)


_ENGINES = {
    EXAMPLES: "takes serialized tf.train.Examples (tfx-bsl's handler)",
    CLASSIFY: "classify, takes serialized tf.train.Examples (tfx-bsl's handler; classify_log PredictionLogs)",
    REGRESS: "regress, takes serialized tf.train.Examples (tfx-bsl's handler; regress_log PredictionLogs)",
    NAMED_TENSORS: "takes named tensors, each built from a feature (the template's own handler)",
}


def _describe_signature(uri: str, signature: Signature, input_features: Mapping[str, str], served: bool) -> list[str]:
    built = []
    if not served:
        verdict = f"not served (its MetaGraph is not tagged {SERVE_TAG!r})"
    else:
        try:
            signature = checked_signature(uri, signature, input_features)
            verdict = _ENGINES[signature.kind]
        except ParameterError as error:
            verdict = f"not served: {error}"
        else:
            if signature.kind == NAMED_TENSORS:
                built = ["    the template builds, per record:"] + [
                    f"      {named.alias} <- feature {named.feature!r}: {named.size} value(s), {named.tf_dtype}"
                    f" of shape {_shape(named.shape)}"
                    for named in named_inputs(signature, input_features)
                ]
    lines = [f"  signature {signature.name!r} ({signature.method}): {verdict}", "    inputs:"]
    lines += [f"      {t.alias}: {t.dtype} {_shape(t.shape)} <- {t.tensor}" for t in signature.inputs]
    lines.append("    outputs:")
    lines += [f"      {t.alias}: {t.dtype} {_shape(t.shape)} <- {t.tensor}" for t in signature.outputs]
    return lines + built


def add_signature(keras_model: str, export_dir: str, features: list[str], output_name: str) -> None:
    import keras

    from tools.export import FeatureSpec, export_example_model

    specs = [FeatureSpec.parse(feature) for feature in features]
    export_example_model(keras.saving.load_model(keras_model), specs, export_dir, output_name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.model", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser("inspect", help="show the signatures, inputs, outputs and dtypes of a SavedModel")
    inspect.add_argument("model_uri")
    inspect.add_argument("--input_features", help="input:feature pairs, as the template parameter maps them")
    wrap = commands.add_parser("add-signature", help="export a Keras model with a serialized-Example signature")
    wrap.add_argument("keras_model", help="a .keras file")
    wrap.add_argument("export_dir")
    wrap.add_argument(
        "--feature",
        action="append",
        required=True,
        help="name[:type[:length]] of an input read from the Example (type float, int or bytes); repeat per input",
    )
    wrap.add_argument("--output_name", default="y", help="alias of the signature's output")
    args = parser.parse_args(argv)
    try:
        if args.command == "inspect":
            print(describe(args.model_uri, parse_input_features(args.input_features)))
        else:
            add_signature(args.keras_model, args.export_dir, args.feature, args.output_name)
            print(describe(args.export_dir))
    except (ParameterError, ValueError) as error:
        print(f"model: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
