"""Models on gs:// staged once per machine into a local, verified cache, then loaded from disk.

TensorFlow's own gs:// support ignores STORAGE_EMULATOR_HOST and reads every file again in every worker
process; Beam's FileSystems honours the emulator and the pipeline's credentials. Staging takes a file lock,
so processes starting together download a model once, and writes a manifest of sizes and SHA-256 digests
that every later process checks before trusting the copy. The Flex Template launcher, on a small VM with a
launch deadline, copies only `saved_model.pb` (all that reading signatures needs); workers copy the whole model.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile

from apache_beam.io.filesystem import CompressionTypes, FileMetadata
from apache_beam.io.filesystems import FileSystems

MANIFEST = "tfx-inference-manifest.json"
SAVED_MODEL_PROTO = "saved_model.pb"
_CHUNK = 8 * 1024 * 1024


def cache_root() -> str:
    return os.environ.get("TFX_INFERENCE_MODEL_CACHE", os.path.join(tempfile.gettempdir(), "tfx-inference-models"))


def local_model_path(uri: str) -> str:
    """Where the model is loaded from: the path itself when local, a cache folder named after the URI for gs://."""
    if not uri.startswith("gs://"):
        return uri
    uri = uri.rstrip("/")
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return os.path.join(cache_root(), f"{uri.rsplit('/', 1)[-1]}-{digest}")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verified(local: str) -> bool:
    try:
        with open(os.path.join(local, MANIFEST)) as f:
            manifest = json.load(f)
        return all(
            os.path.getsize(os.path.join(local, name)) == entry["size"]
            and _sha256(os.path.join(local, name)) == entry["sha256"]
            for name, entry in manifest.items()
        )
    except (OSError, ValueError, KeyError):
        return False


def model_files(uri: str) -> list[FileMetadata]:
    """The model's files, without "folder" objects.

    A folder made in the Cloud Console (or by several upload tools) is a zero-byte object whose name ends in
    `/`; it holds nothing to copy, and its name cannot be a file.
    """
    prefix = uri.rstrip("/") + "/"
    objects = FileSystems.match([prefix + "**"])[0].metadata_list
    folders = [metadata for metadata in objects if metadata.path.endswith("/")]
    for folder in folders:
        if folder.size_in_bytes:
            raise OSError(
                f"model object {folder.path} ends in '/' but holds {folder.size_in_bytes} bytes: "
                "expected a zero-byte folder object or a file name"
            )
    files = [metadata for metadata in objects if not metadata.path.endswith("/")]
    if not files:
        raise FileNotFoundError(f"model {uri} has no files")
    return files


def _copy(metadata: FileMetadata, target: str) -> dict:
    os.makedirs(os.path.dirname(target), exist_ok=True)
    digest, size = hashlib.sha256(), 0
    source = FileSystems.open(metadata.path, compression_type=CompressionTypes.UNCOMPRESSED)
    with source, open(target, "wb") as out:
        for chunk in iter(lambda: source.read(_CHUNK), b""):
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    if size != metadata.size_in_bytes:
        raise OSError(f"model file {metadata.path}: read {size} bytes, the object has {metadata.size_in_bytes}")
    return {"size": size, "sha256": digest.hexdigest()}


def _download(uri: str, destination: str) -> dict:
    prefix = uri.rstrip("/") + "/"
    manifest = {}
    for metadata in model_files(uri):
        name = metadata.path[len(prefix) :]
        manifest[name] = _copy(metadata, os.path.join(destination, name))
    return manifest


def stage_model(uri: str, local: str | None = None) -> str:
    """The local directory holding the model at `uri`, downloading and verifying it first if needed."""
    local = local or local_model_path(uri)
    if local == uri:
        return local
    parent = os.path.dirname(local)
    os.makedirs(parent, exist_ok=True)
    with open(f"{local}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _verified(local):
            return local
        staging = tempfile.mkdtemp(dir=parent, prefix=".staging-")
        try:
            manifest = _download(uri, staging)
            with open(os.path.join(staging, MANIFEST), "w") as f:
                json.dump(manifest, f)
            if os.path.exists(local):
                shutil.rmtree(local)  # an earlier copy that failed verification
            os.rename(staging, local)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return local


def stage_saved_model_proto(uri: str, local: str | None = None) -> str:
    """The local directory holding at least the model's `saved_model.pb`: what reading its signatures needs.

    Written without a manifest, so a worker's `stage_model` still copies (and verifies) the whole model there.
    A model already staged in full is left as it is.
    """
    local = local or local_model_path(uri)
    if local == uri:
        return local
    os.makedirs(os.path.dirname(local), exist_ok=True)
    with open(f"{local}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _verified(local):
            return local
        source = FileSystems.match([FileSystems.join(uri, SAVED_MODEL_PROTO)])[0].metadata_list
        if not source:
            raise FileNotFoundError(f"model {uri} has no {SAVED_MODEL_PROTO}")
        os.makedirs(local, exist_ok=True)
        partial = os.path.join(local, f".{SAVED_MODEL_PROTO}.partial")
        _copy(source[0], partial)
        os.replace(partial, os.path.join(local, SAVED_MODEL_PROTO))
    return local
