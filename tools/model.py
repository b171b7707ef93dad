"""The model tool: inspect a SavedModel's signatures, or give a Keras model a serialized-Example signature.

python -m tools.model inspect demo/models/multiply_by_5
python -m tools.model add-signature my_model.keras exported/ --feature x:float --feature count:int
"""

from __future__ import annotations

import argparse
import sys

from transforms.config import ParameterError
from transforms.inference.signatures import Signature, read_saved_model, signatures_by_tags


def _shape(shape: tuple[int, ...] | None) -> str:
    return "unknown rank" if shape is None else "(" + ", ".join(str(d) for d in shape) + ")"


def describe(uri: str) -> str:
    """Every MetaGraph and signature of the model, like `saved_model_cli show --all`."""
    lines = []
    for tags, signatures in signatures_by_tags(read_saved_model(uri)).items():
        lines.append(f"MetaGraph with tag-set: {', '.join(tags)}")
        for signature in signatures:
            lines.extend(_describe_signature(signature))
    return "\n".join(lines)


def _describe_signature(signature: Signature) -> list[str]:
    verdict = (
        "takes serialized tf.train.Examples" if signature.takes_serialized_examples else "not usable by RunInference"
    )
    lines = [f"  signature {signature.name!r} ({signature.method}): {verdict}", "    inputs:"]
    lines += [f"      {t.alias}: {t.dtype} {_shape(t.shape)} <- {t.tensor}" for t in signature.inputs]
    lines.append("    outputs:")
    lines += [f"      {t.alias}: {t.dtype} {_shape(t.shape)} <- {t.tensor}" for t in signature.outputs]
    return lines


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
            print(describe(args.model_uri))
        else:
            add_signature(args.keras_model, args.export_dir, args.feature, args.output_name)
            print(describe(args.export_dir))
    except (ParameterError, ValueError) as error:
        print(f"model: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
