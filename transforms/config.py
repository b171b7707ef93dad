"""Template parameters turned into one validated, immutable configuration of the pipeline."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from transforms.parameters import FEATURE_TYPES

SINGLE_MODEL_PATTERNS = ("predict", "postprocess", "keyed")
MULTI_MODEL_PATTERNS = ("multi_parallel", "multi_sequence")


class ParameterError(ValueError):
    """A template parameter is wrong; the message names it and says what was expected."""


@dataclass(frozen=True)
class ModelSpec:
    """One SavedModel the pipeline runs, and the name its predictions carry."""

    uri: str
    name: str


@dataclass(frozen=True)
class FeatureTypes:
    """The tf.train.Example type of each feature: a default, and exceptions by name."""

    default: str = "float"
    by_name: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def of(self, feature: str) -> str:
        return self.by_name.get(feature, self.default)

    @classmethod
    def parse(cls, default: str, text: str | None) -> FeatureTypes:
        by_name = {}
        for item in filter(None, (text or "").split(",")):
            name, _, kind = item.partition(":")
            if not name or kind not in FEATURE_TYPES:
                raise ParameterError(
                    f"--feature_types item {item!r} is not name:type with type one of {', '.join(FEATURE_TYPES)}"
                )
            by_name[name] = kind
        return cls(default, MappingProxyType(by_name))


@dataclass(frozen=True)
class Batching:
    """Batch sizes RunInference's BatchElements keeps to."""

    min_batch_size: int = 1
    max_batch_size: int = 512


@dataclass(frozen=True)
class InferenceConfig:
    """Everything the pipeline needs to know, checked once before it is built."""

    pattern: str
    models: tuple[ModelSpec, ...]
    input: str
    input_format: str | None
    output: str
    dead_letter: str
    key_field: str = "key"
    feature_types: FeatureTypes = FeatureTypes()
    signature_name: str = "serving_default"
    batching: Batching = Batching()
    chain_feature: str = "x"
    chain_output: str | None = None

    @property
    def requires_key(self) -> bool:
        return self.pattern == "keyed"


def model_name_from_uri(uri: str) -> str:
    """The URI's last path segment: gs://bucket/models/multiply_by_5/ is named multiply_by_5."""
    return uri.rstrip("/").rsplit("/", 1)[-1]


def models_from_args(pattern: str, model_uris: str, model_names: str | None) -> tuple[ModelSpec, ...]:
    uris = [uri.strip() for uri in model_uris.split(",") if uri.strip()]
    if pattern in SINGLE_MODEL_PATTERNS and len(uris) != 1:
        raise ParameterError(
            f"--pattern={pattern} runs exactly one model, but --model_uris names {len(uris)}: {', '.join(uris)}"
        )
    if pattern in MULTI_MODEL_PATTERNS and len(uris) < 2:
        raise ParameterError(
            f"--pattern={pattern} runs two or more models, but --model_uris names {len(uris)}; "
            "use --pattern=postprocess for a single model"
        )
    for uri in uris:
        if "://" in uri and not uri.startswith("gs://"):
            raise ParameterError(f"model URI {uri!r} is neither a local path nor a gs:// URI")
    if model_names:
        names = [name.strip() for name in model_names.split(",")]
        if len(names) != len(uris):
            raise ParameterError(
                f"--model_names has {len(names)} names but --model_uris has {len(uris)} models; give one name per model"
            )
    else:
        names = [model_name_from_uri(uri) for uri in uris]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ParameterError(
            f"model name(s) {', '.join(duplicates)} are used twice; give distinct names with --model_names"
        )
    return tuple(ModelSpec(uri, name) for uri, name in zip(uris, names, strict=True))


def config_from_args(args: argparse.Namespace) -> InferenceConfig:
    """Validate the parsed template parameters (without touching files) and freeze them."""
    if args.min_batch_size < 1 or args.max_batch_size < args.min_batch_size:
        raise ParameterError(
            f"batch sizes must satisfy 1 <= --min_batch_size <= --max_batch_size; "
            f"got {args.min_batch_size} and {args.max_batch_size}"
        )
    return InferenceConfig(
        pattern=args.pattern,
        models=models_from_args(args.pattern, args.model_uris, args.model_names),
        input=args.input,
        input_format=args.input_format,
        output=args.output,
        dead_letter=args.dead_letter or f"{args.output.rstrip('/')}_dead_letter",
        key_field=args.key_field,
        feature_types=FeatureTypes.parse(args.default_feature_type, args.feature_types),
        signature_name=args.signature_name,
        batching=Batching(args.min_batch_size, args.max_batch_size),
        chain_feature=args.chain_feature,
        chain_output=args.chain_output,
    )
