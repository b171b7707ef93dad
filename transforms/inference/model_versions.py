"""Numbered model versions: a base directory resolved to its newest complete version, locally or on gs://.

TFX's Pusher, TF Serving and Keras `model.export` write each model to a numbered directory under one base
(`.../serving/1732700000/saved_model.pb`), and copies land file by file: while a version is being written,
its `saved_model.pb` can be there before its variables. A version is taken only when it is complete: its
`saved_model.pb`, `variables/variables.index`, and every data shard the index names
(`variables.data-0000K-of-0000N`, K = 0..N-1). N is read from the index itself: TensorFlow writes its
BundleHeaderProto as the table's first entry (empty key, uncompressed block), so the first bytes of the index
say how many shards the checkpoint has, even when none of them has arrived yet. An index whose first entry
is not that header (a format this module does not know) falls back to the N the shard names carry.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace

from apache_beam.io.filesystems import FileSystems
from google.protobuf.message import DecodeError
from tensorflow.core.protobuf.tensor_bundle_pb2 import BundleHeaderProto

from transforms.config import ModelSpec, ParameterError

SAVED_MODEL_PROTO = "saved_model.pb"
VARIABLES_INDEX = "variables/variables.index"
_VERSION = re.compile(r"\d+")
_SHARD = re.compile(r"variables\.data-(\d+)-of-(\d+)")


@dataclass(frozen=True)
class ModelVersion:
    """One numbered version under a base: its directory and its number, as written (leading zeros kept)."""

    uri: str
    version: str

    @property
    def number(self) -> int:
        return int(self.version)


def _files(pattern: str) -> list[str]:
    return [metadata.path for metadata in FileSystems.match([pattern])[0].metadata_list]


def _relative(uri: str, path: str) -> str:
    return path[len(uri.rstrip("/")) + 1 :]


def is_saved_model(uri: str) -> bool:
    """True when `uri` is itself a SavedModel directory (it holds a saved_model.pb)."""
    return bool(_files(FileSystems.join(uri, SAVED_MODEL_PROTO)))


def numbered_versions(base: str) -> list[ModelVersion]:
    """The numbered directories under `base` that hold a saved_model.pb, newest first (complete or not)."""
    found = []
    # A glob's `*` crosses `/` on gs:// but not locally: only `<digits>/saved_model.pb` right under base counts.
    for path in _files(FileSystems.join(base, "*", SAVED_MODEL_PROTO)):
        version, _, rest = _relative(base, path).partition("/")
        if _VERSION.fullmatch(version) and rest == SAVED_MODEL_PROTO:
            found.append(ModelVersion(FileSystems.join(base.rstrip("/"), version), version))
    return sorted(found, key=lambda v: (v.number, v.version), reverse=True)


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, position


def shards_in_index(index: bytes) -> int | None:
    """The shard count of a variables.index's BundleHeaderProto (its first entry), or None if it is not there.

    A table block entry is varint shared-key length, varint key length, varint value length, key, value; the
    header's key is empty.
    """
    try:
        shared, position = _varint(index, 0)
        key_length, position = _varint(index, position)
        value_length, position = _varint(index, position)
        if shared or key_length or position + value_length > len(index):
            return None
        header = BundleHeaderProto.FromString(index[position : position + value_length])
    except (IndexError, DecodeError):
        return None
    return header.num_shards or None


def _index_head(uri: str) -> bytes:
    with FileSystems.open(FileSystems.join(uri, VARIABLES_INDEX)) as index:
        return index.read(64)  # the header is about ten bytes; a table's first entry starts at byte 0


def incomplete_reason(uri: str) -> str | None:
    """Why the SavedModel at `uri` is not complete yet, or None when every file it needs is there."""
    names = {_relative(uri, path) for path in _files(FileSystems.join(uri, "**"))}
    if SAVED_MODEL_PROTO not in names:
        return f"it has no {SAVED_MODEL_PROTO}"
    if VARIABLES_INDEX not in names:
        return f"it has no {VARIABLES_INDEX}"
    shards = [_SHARD.fullmatch(name.removeprefix("variables/")) for name in names if name.startswith("variables/")]
    counts = {int(match.group(2)) for match in shards if match}
    from_index = shards_in_index(_index_head(uri))
    if from_index is not None:
        counts = {from_index} | counts
    if not counts:
        return "it has no variables data shard (variables/variables.data-00000-of-0000N)"
    if len(counts) > 1:
        return f"its variables shards disagree on their count ({', '.join(map(str, sorted(counts)))})"
    expected = counts.pop()
    present = {int(match.group(1)) for match in shards if match}
    missing = sorted(set(range(expected)) - present)
    if missing:
        return f"{len(missing)} of its {expected} variables data shards are missing (shard {missing[0]} first)"
    return None


def newest_complete_version(base: str) -> tuple[ModelVersion | None, dict[str, str]]:
    """The newest complete version under `base`, and why each newer one was passed over (version -> reason)."""
    passed_over = {}
    for candidate in numbered_versions(base):
        reason = incomplete_reason(candidate.uri)
        if reason is None:
            return candidate, passed_over
        passed_over[candidate.version] = reason
    return None, passed_over


def resolve_model(model: ModelSpec) -> ModelSpec:
    """The model as it runs: a SavedModel directory as given, a base of numbered versions as its newest complete one.

    The resolved spec keeps the base (for --model_refresh_seconds) and the version its predictions will name.
    """
    if model.remote:
        return model
    if is_saved_model(model.uri):
        pinned = model.uri.rstrip("/").rsplit("/", 1)[-1]
        # A numbered version given by its own directory: pinned, never refreshed, but its predictions name it.
        return replace(model, version=pinned) if _VERSION.fullmatch(pinned) else model
    newest, passed_over = newest_complete_version(model.uri)
    if newest is None:
        skipped = "; ".join(f"version {v}: {reason}" for v, reason in passed_over.items())
        raise ParameterError(
            f"model {model.uri} has no readable {SAVED_MODEL_PROTO}; expected a SavedModel directory, or a base of "
            "numbered version directories with a complete version (<base>/<number>/saved_model.pb and its variables)"
            + (f"; {skipped}" if skipped else "")
        )
    for version, reason in passed_over.items():
        logging.warning("model %s: version %s is not complete yet, so not taken: %s", model.uri, version, reason)
    return ModelSpec(newest.uri, model.name, version=newest.version, base=model.uri.rstrip("/"))


def resolution_line(model: ModelSpec) -> str:
    """What the launch output says about one model: the directory it runs and, for a base, which version."""
    if model.base is None and model.version is not None:
        return f"model {model.name}: version {model.version}, pinned ({model.uri}; not refreshed)"
    if model.base is None:
        return f"model {model.name}: {model.uri} (a SavedModel directory: its predictions name no version)"
    return f"model {model.name}: version {model.version} of {model.base} ({model.uri})"
